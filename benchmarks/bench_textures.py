"""Textures, global anomalies and the detector's own decisions, on the simulated textile and MVTec bottle.

Protocol. Textile (``conformal-clip-data``, 250 px): 100 held-out nominal images (a fixed draw,
seed 0), 100 ``global`` and 100 ``local`` images (fixed draws); k references from the other 900
nominal images (seeded permutation prefix, seeds 0..N-1). Bottle: k references from train/good
(sample_shots), the test set. Prints, per k, mean over seeds:
- textile: AUROC global vs nominal, local vs nominal, image F1-max (nominal vs all defects), and the
  share flagged at the detector's own threshold (pred_label): nominal / global / local;
- bottle: image AUROC, pixel AUROC (original size), image F1-max, share flagged good / defective,
  and the share of pixels flagged (pred_mask) inside / outside the defects.

Variants are detector settings: ``default``; ``no-distribution`` (distribution=off);
``objects-only`` (texture=off, distribution=off: the memory bank as configured, with the held-out
thresholds).

    python benchmarks/bench_textures.py [--data textile bottle] [--shots 1 4] [--seeds 2] [--variants ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vandal.data.datasets import load_folder, load_mask
from vandal.data.sampling import sample_shots
from vandal.detector import Detector
from vandal.metrics import auroc, f1_max

# shared/ sits next to the checkout (../shared from the repository, one more level up from a worktree)
BOTTLE = next((p / "shared" / "data" / "mvtec_ad" / "bottle" for p in Path(__file__).resolve().parents
               if (p / "shared" / "data" / "mvtec_ad" / "bottle").is_dir()),
              Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle")
VARIANTS = {"default": {}, "no-distribution": {"distribution": "off"},
            "objects-only": {"texture": "off", "distribution": "off"}}


def textile_split() -> tuple[list[Path], list[Path], list[Path], list[Path]]:
    """(reference pool, 100 nominal, 100 global, 100 local) paths: the fixed textile protocol."""
    from conformal_clip_data import textile_simulated_root

    root = Path(textile_simulated_root())
    files = {d: sorted((root / d).glob("*.jpg")) for d in ("nominal", "global", "local")}
    order = np.random.default_rng(0).permutation(len(files["nominal"]))
    pool = [files["nominal"][i] for i in order[100:]]
    nominal = [files["nominal"][i] for i in order[:100]]
    global_ = [files["global"][i] for i in np.random.default_rng(1).permutation(len(files["global"]))[:100]]
    local = [files["local"][i] for i in np.random.default_rng(2).permutation(len(files["local"]))[:100]]
    return pool, nominal, global_, local


def textile_references(pool: list[Path], k: int, seed: int) -> list[Path]:
    return [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:k]]


def run_variants(variants: list[str], references: list, images: list) -> dict[str, dict]:
    """-> per variant: scores [N], flagged [N] (pred_label), maps, masks, and the fitted plan."""
    out = {}
    for name in variants:
        detector = Detector(progress=False, **VARIANTS[name]).fit([str(p) for p in references])
        predictions = detector.predict([str(p) for p in images])
        out[name] = {"scores": np.array([p.pred_score for p in predictions]),
                     "flagged": np.array([p.pred_label for p in predictions]),
                     "maps": [p.anomaly_map for p in predictions], "masks": [p.pred_mask for p in predictions],
                     "plan": (detector.plan_.texture, len(detector.plan_.views), detector.plan_.neighbourhood,
                              detector.calibration_.method)}
    return out


def textile(args: argparse.Namespace) -> None:
    pool, nominal, global_, local = textile_split()
    images = nominal + global_ + local
    labels = np.r_[np.zeros(100), np.ones(200)]
    print("textile: 100 nominal / 100 global / 100 local; references from the other 900 nominal")
    for k in args.shots:
        rows: dict[str, list] = {v: [] for v in args.variants}
        for seed in range(args.seeds):
            start = time.perf_counter()
            result = run_variants(args.variants, textile_references(pool, k, seed), images)
            for name in args.variants:
                s, f = result[name]["scores"], result[name]["flagged"]
                rows[name].append([auroc(labels[:200], s[:200]), auroc(labels[:200], np.r_[s[:100], s[200:]]),
                                   f1_max(labels, s), f[:100].mean(), f[100:200].mean(), f[200:].mean()])
            plans = {name: result[name]["plan"] for name in args.variants}
            print(f"  k={k} seed={seed} done in {time.perf_counter() - start:.0f}s {plans}", flush=True)
        print(f"k={k} (mean of {args.seeds} seeds)  | AUROC global | AUROC local | F1-max | flagged nominal / global / local")
        for name, values in rows.items():
            m = np.mean(values, axis=0)
            print(f"  {name:16s} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.2f} / {m[4]:.2f} / {m[5]:.2f}")


def bottle(args: argparse.Namespace) -> None:
    if not args.root.is_dir():
        print(f"bottle: {args.root} not found, skipped")
        return
    split = next(iter(load_folder(args.root).values()))
    labels = np.array([s.label for s in split.test])
    masks = [load_mask(s.mask_path) if s.mask_path else None for s in split.test]
    print(f"bottle: {len(split.test)} test images ({labels.sum()} defective)")
    for k in args.shots:
        rows: dict[str, list] = {v: [] for v in args.variants}
        for seed in range(args.seeds):
            start = time.perf_counter()
            result = run_variants(args.variants, [s.path for s in sample_shots(split.train, k, seed)],
                                  [s.path for s in split.test])
            for name in args.variants:
                s, f, maps = result[name]["scores"], result[name]["flagged"], result[name]["maps"]
                truth = np.concatenate([(m if m is not None else np.zeros(p.shape, bool)).ravel()
                                        for m, p in zip(masks, maps, strict=True)])
                pixel = auroc(truth, np.concatenate([p.ravel() for p in maps]))
                flagged = np.concatenate([m.ravel() for m in result[name]["masks"]])
                rows[name].append([auroc(labels, s), pixel, f1_max(labels, s), f[labels == 0].mean(),
                                   f[labels == 1].mean(), flagged[truth].mean(), flagged[~truth].mean()])
            plans = {name: result[name]["plan"] for name in args.variants}
            print(f"  k={k} seed={seed} done in {time.perf_counter() - start:.0f}s {plans}", flush=True)
        print(f"k={k} (mean of {args.seeds} seeds)  | image AUROC | pixel AUROC | F1-max | flagged good / defective"
              " | mask: defect pixels / other pixels")
        for name, values in rows.items():
            m = np.mean(values, axis=0)
            print(f"  {name:16s} | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.4f} | {m[3]:.2f} / {m[4]:.2f} | {m[5]:.2f} / {m[6]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["textile", "bottle"], choices=["textile", "bottle"])
    parser.add_argument("--root", type=Path, default=BOTTLE)
    parser.add_argument("--shots", type=int, nargs="+", default=None, help="default: textile 1 4, bottle 1 2 4")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for data in args.data:
        shots = args.shots
        args.shots = shots or ([1, 4] if data == "textile" else [1, 2, 4])
        textile(args) if data == "textile" else bottle(args)
        args.shots = shots


if __name__ == "__main__":
    main()
