"""Real data: MVTec AD bottle, k = 1, 2, 4 references from train/good (seeds 0..4, no replacement).

Prints image AUROC and pixel AUROC (original resolution, MVTec protocol) per k, mean +- std over
seeds. Target with the default backbone: image AUROC >= 0.99 and pixel AUROC >= 0.98 at k = 1.

    python benchmarks/bench_bottle.py [--root ../shared/data/mvtec_ad/bottle] [--shots 1 2 4] [--seeds 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vandal.data.datasets import load_folder, load_mask
from vandal.data.sampling import sample_shots
from vandal.detector import Detector
from vandal.metrics import auroc

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--neighbourhood", type=int, nargs="+", default=[3])
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--taps", type=int, nargs="+", default=None)
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} not found: pass --root to an MVTec AD category folder")
    split = next(iter(load_folder(args.root).values()))
    labels = np.array([s.label for s in split.test])
    masks = [load_mask(s.mask_path) if s.mask_path else None for s in split.test]
    print(f"bottle: {len(split.train)} train/good, {len(split.test)} test ({labels.sum()} anomalous)")
    for k in args.shots:
        image_scores, pixel_scores, flagged = [], [], []
        for seed in range(args.seeds):
            shots = sample_shots(split.train, k, seed)
            start = time.perf_counter()
            detector = Detector(backbone=args.backbone, image_size=args.image_size, taps=args.taps, neighbourhood=tuple(args.neighbourhood),
                                augment=args.augment, progress=False).fit([s.path for s in shots])
            predictions = detector.predict([s.path for s in split.test])
            seconds = time.perf_counter() - start
            scores = np.array([p.pred_score for p in predictions])
            flat_maps = np.concatenate([p.anomaly_map.ravel() for p in predictions])
            flat_masks = np.concatenate([(m if m is not None else np.zeros(p.anomaly_map.shape, bool)).ravel()
                                         for m, p in zip(masks, predictions)])
            image_scores.append(auroc(labels, scores))
            pixel_scores.append(auroc(flat_masks, flat_maps))
            labels_pred = np.array([p.pred_label for p in predictions])
            flagged.append(((labels_pred == labels).mean(), labels_pred[labels == 0].mean(), labels_pred[labels == 1].mean()))
            print(f"  k={k} seed={seed}: image AUROC {image_scores[-1]:.4f}  pixel AUROC {pixel_scores[-1]:.4f}  "
                  f"accuracy {flagged[-1][0]:.3f} (FPR {flagged[-1][1]:.3f}, TPR {flagged[-1][2]:.3f})  {seconds:.1f}s")
        print(f"k={k}: image AUROC {np.mean(image_scores):.4f} +- {np.std(image_scores):.4f}; "
              f"pixel AUROC {np.mean(pixel_scores):.4f} +- {np.std(pixel_scores):.4f}")


if __name__ == "__main__":
    main()
