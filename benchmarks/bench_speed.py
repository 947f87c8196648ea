"""Images/s for fit and predict with the default backbone on CPU, and the share of predict time
spent outside the backbone forward (target: at most 10%).

    python benchmarks/bench_speed.py [--images DIR] [--n 40] [--shots 4]

Uses MVTec bottle test images when present (900 x 900 PNG), else synthetic 900 x 900 images.
Decoding the file is counted as outside the backbone, as a user would see it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vandal.detector import Detector

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


class TimedBackbone(torch.nn.Module):
    """Wraps the backbone and accumulates the seconds spent in its forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seconds = 0.0

    def forward(self, pixels):
        start = time.perf_counter()
        out = self.inner(pixels)
        self.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=BOTTLE / "test" / "good" if BOTTLE.is_dir() else None)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--shots", type=int, default=4)
    args = parser.parse_args()
    if args.images:
        files = sorted(args.images.rglob("*.png"))
        train = sorted((BOTTLE / "train" / "good").glob("*.png"))[: args.shots] if BOTTLE.is_dir() else files[: args.shots]
        test = (files * (args.n // len(files) + 1))[: args.n]
        source = str(args.images)
    else:
        rng = np.random.default_rng(0)
        train = [rng.integers(0, 255, (900, 900, 3), dtype=np.uint8) for _ in range(args.shots)]
        test = [rng.integers(0, 255, (900, 900, 3), dtype=np.uint8) for _ in range(args.n)]
        source = "synthetic 900x900"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; images: {source}")
    detector = Detector(progress=False)
    start = time.perf_counter()
    detector.fit(train)
    fit_seconds = time.perf_counter() - start
    print(f"fit: {len(train)} references in {fit_seconds:.2f} s ({len(train) / fit_seconds:.2f} img/s, calibration included)")
    detector.predict(test[:2])  # warm-up
    timed = TimedBackbone(detector.backbone_)
    detector.backbone_ = timed
    start = time.perf_counter()
    detector.predict(test)
    total = time.perf_counter() - start
    outside = total - timed.seconds
    print(f"predict: {len(test)} images in {total:.2f} s ({len(test) / total:.2f} img/s)")
    print(f"backbone forward {timed.seconds:.2f} s; outside the backbone {outside:.2f} s = {100 * outside / total:.1f}% "
          f"of predict time (target <= 10%)")


if __name__ == "__main__":
    main()
