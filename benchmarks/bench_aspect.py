"""Which resize policy serves long images (500 x 1250)? squash vs pad vs tile.

Long synthetic woven textures (fit on 2 defect-free ones) with small planted defects; prints
image AUROC, pixel AUROC and seconds per image for each policy.

    python benchmarks/bench_aspect.py [--n 12] [--height 500] [--width 1250]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vandal.detector import Detector
from vandal.metrics import auroc


def long_texture(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 2)
    weave = 0.5 + 0.25 * np.sin(2 * np.pi * x / 10 + phase[0]) * np.sin(2 * np.pi * y / 10 + phase[1])
    base = np.stack([weave * 200, weave * 170 + 20, weave * 120 + 40], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def plant(image: np.ndarray, seed: int, radius: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(500 + seed)
    height, width = image.shape[:2]
    cy, cx = rng.integers(radius + 5, height - radius - 5), rng.integers(radius + 5, width - radius - 5)
    y, x = np.mgrid[0:height, 0:width]
    mask = ((y - cy) / radius) ** 2 + ((x - cx) / (radius * 0.5)) ** 2 <= 1
    out = image.copy()
    out[mask] = (out[mask].astype(np.float32) * 0.45).astype(np.uint8)  # a dark stain
    return out, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--height", type=int, default=500)
    parser.add_argument("--width", type=int, default=1250)
    args = parser.parse_args()
    refs = [long_texture(s, args.height, args.width) for s in (0, 1)]
    normal = [long_texture(100 + i, args.height, args.width) for i in range(args.n)]
    defective = [plant(long_texture(200 + i, args.height, args.width), i) for i in range(args.n)]
    images = normal + [d for d, _ in defective]
    labels = np.array([0] * args.n + [1] * args.n)
    masks = [np.zeros((args.height, args.width), bool)] * args.n + [m for _, m in defective]
    print(f"{args.n} normal + {args.n} defective images of {args.height} x {args.width}; defects ~{2 * 9}x{9} px")
    for policy in ("squash", "pad", "tile"):
        detector = Detector(resize=policy, progress=False).fit(refs)
        start = time.perf_counter()
        predictions = detector.predict(images)
        seconds = (time.perf_counter() - start) / len(images)
        image_auroc = auroc(labels, np.array([p.pred_score for p in predictions]))
        pixel_auroc = auroc(np.concatenate([m.ravel() for m in masks]),
                            np.concatenate([p.anomaly_map.ravel() for p in predictions]))
        print(f"{policy:>6}: image AUROC {image_auroc:.4f}  pixel AUROC {pixel_auroc:.4f}  {seconds:.2f} s/image")


if __name__ == "__main__":
    main()
