"""Ablation of the Multi-Scale Memory Comparison additions (docs/method.md §5), cumulative rows:

global (raw tap tokens, neighbourhood 1) / + augmentation (11 views a shot) / + multi-scale
(neighbourhoods 1, 3, 5) / + individual memory bank (per-object crops, classical segmenter).

On the synthetic multi-object capsule scenes (tests/scenes.py) and on MVTec AD bottle. Prints image
AUROC, pixel AUROC, AU-PRO (FPR <= 0.3) and seconds per test image (predict only; fit apart),
mean +- std over seeds. References: k shots without replacement.

    python benchmarks/bench_ablation.py [--data synthetic bottle] [--shots 1 2 4] [--seeds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vandal.data.datasets import load_folder, load_mask
from vandal.data.images import load_image
from vandal.data.sampling import sample_shots
from vandal.detector import Detector
from vandal.metrics import aupro, auroc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic scene generator
from scenes import capsule_scene, scene_set  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"
ROWS = {
    "global": dict(neighbourhood=(1,)),
    "+ augmentation": dict(neighbourhood=(1,), augment=True),
    "+ multi-scale": dict(neighbourhood=(1, 3, 5), augment=True),
    "+ individual": dict(neighbourhood=(1, 3, 5), augment=True, individual="on"),
}


def synthetic(seed: int, k: int, n_test: int):
    """k normal reference scenes (drawn per seed) and a fixed test set (half anomalous)."""
    references = [capsule_scene(10_000 + 100 * seed + i)[0] for i in range(k)]
    images, masks, labels = scene_set(n_test // 2, n_test - n_test // 2, seed=0)
    return references, images, masks, np.array(labels)


def bottle(root: Path, seed: int, k: int, cache: dict):
    if "split" not in cache:
        split = next(iter(load_folder(root).values()))
        cache["split"] = split
        cache["images"] = [load_image(s.path) for s in split.test]
        cache["labels"] = np.array([s.label for s in split.test])
        cache["masks"] = [load_mask(s.mask_path) if s.mask_path else np.zeros(im.shape[:2], bool)
                          for s, im in zip(split.test, cache["images"])]
    references = [load_image(s.path) for s in sample_shots(cache["split"].train, k, seed)]
    return references, cache["images"], cache["masks"], cache["labels"]


def run(detector: Detector, references, images, masks, labels) -> tuple[float, float, float, float]:
    detector.fit(references)
    start = time.perf_counter()
    predictions = detector.predict(images)
    per_image = (time.perf_counter() - start) / len(images)
    maps = [p.anomaly_map for p in predictions]
    image = auroc(labels, np.array([p.pred_score for p in predictions]))
    pixel = auroc(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    return image, pixel, aupro(masks, maps), per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["synthetic", "bottle"], choices=["synthetic", "bottle"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--n-test", type=int, default=20, help="synthetic test scenes (half anomalous)")
    parser.add_argument("--image-size", type=int, default=None)
    args = parser.parse_args()
    cache: dict = {}
    print("| data | k | row | image AUROC | pixel AUROC | AU-PRO | s / image |")
    print("|---|---|---|---|---|---|---|")
    for data in args.data:
        for k in args.shots:
            for row in args.rows:
                results = []
                for seed in range(args.seeds):
                    refs, images, masks, labels = (synthetic(seed, k, args.n_test) if data == "synthetic"
                                                   else bottle(args.root, seed, k, cache))
                    detector = Detector(image_size=args.image_size, progress=False, **ROWS[row])
                    results.append(run(detector, refs, images, masks, labels))
                mean, std = np.mean(results, 0), np.std(results, 0)
                cells = " | ".join(f"{m:.4f} +- {s:.4f}" for m, s in zip(mean[:3], std[:3]))
                print(f"| {data} | {k} | {row} | {cells} | {mean[3]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
