"""Real surfaces and the sets the defaults must keep: one table, the detector's own decisions included.

Sets (references never overlap the tests):
- ``kolektor``: KolektorSDD (``shared/data/kolektorsdd``, MVTec layout, 500 x ~1250 grey): k references
  from train/good (sample_shots), the 152 test images;
- ``kolektor-varied``: the same images made to vary as real sets outside the repo do: each reference
  and test image (seeded per image) is cropped to 55-100 % of each side (the defect kept inside),
  rescaled by 0.75-1.0 (camera distance), and given a gain of 0.7-1.3, an offset of -25..25 grey
  levels and a linear light gradient of up to +-15 % across the part; a default that only works on
  uniform images shows here;
- ``textile``: the simulated textile (conformal-clip-data), the fixed split of bench_textures.py
  (no pixel masks: pixel columns are empty; image AUROC is all defects vs nominal, then global and
  local apart);
- ``bottle``: MVTec AD bottle, k references from train/good, the test set.

Columns, mean over seeds: image AUROC, pixel AUROC, PRO (exact, FPR <= 0.3), the share of good and of
defective images flagged at the detector's own threshold (pred_label), pixel F1 of pred_mask (the
detector's own level, pixels pooled) vs pixel F1-max of the same maps; then per source the image
AUROC of its own score and the share of good / defective images it flags alone (memory: the
calibrated map maximum; distribution: its calibrated decision): who makes the false alarms and the
misses.

    python benchmarks/bench_surfaces.py [--sets kolektor textile bottle] [--k 1 4] [--seeds 3]
        [--set memory.texture=off --set distribution.mode=off]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vandal.config import parse_assignment
from vandal.data.datasets import load_folder, load_mask
from vandal.data.sampling import sample_shots
from vandal.detector import Detector
from vandal.metrics import auroc, pixel_metrics
from vandal.prediction import Prediction

HERE = Path(__file__).resolve()
SHARED = next((p / "shared" / "data" for p in HERE.parents if (p / "shared" / "data").is_dir()),
              HERE.parents[2] / "shared" / "data")
SETS = ("kolektor", "kolektor-varied", "textile", "bottle")
DEFAULT_SEEDS = {"kolektor": 3, "kolektor-varied": 2, "textile": 1, "bottle": 1}


@dataclass
class Case:
    """One set at one k and seed: references and tests (paths or arrays), labels, masks (None: no pixel truth),
    and named subsets of the defective tests (textile: global / local)."""

    references: list
    tests: list
    labels: np.ndarray
    masks: list[np.ndarray | None] | None
    groups: dict[str, np.ndarray]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def mvtec_case(root: Path, k: int, seed: int) -> Case:
    split = next(iter(load_folder(root).values()))
    labels = np.array([s.label for s in split.test])
    masks = [load_mask(s.mask_path) if s.mask_path else None for s in split.test]
    return Case([s.path for s in sample_shots(split.train, k, seed)], [s.path for s in split.test], labels, masks, {})


def vary(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """A crop of 55-100 % per side keeping the defect, rescaled by 0.75-1, with gain, offset and a light gradient."""
    height, width = image.shape[:2]
    ch, cw = (int(round(side * rng.uniform(0.55, 1.0))) for side in (height, width))
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        # the crop must hold the defect's box (or as much of it as fits)
        ch, cw = max(ch, min(height, ys.max() - ys.min() + 1)), max(cw, min(width, xs.max() - xs.min() + 1))
        y0 = rng.integers(max(0, ys.max() + 1 - ch), min(ys.min(), height - ch) + 1)
        x0 = rng.integers(max(0, xs.max() + 1 - cw), min(xs.min(), width - cw) + 1)
    else:
        y0, x0 = rng.integers(0, height - ch + 1), rng.integers(0, width - cw + 1)
    crop = image[y0: y0 + ch, x0: x0 + cw].astype(np.float32)
    scale = rng.uniform(0.75, 1.0)
    size = (max(16, int(round(cw * scale))), max(16, int(round(ch * scale))))
    crop = np.stack([np.asarray(Image.fromarray(crop[..., c], mode="F").resize(size, Image.Resampling.BILINEAR))
                     for c in range(crop.shape[2])], axis=-1)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    ramp = (np.cos(angle) * (x / size[0] - 0.5) + np.sin(angle) * (y / size[1] - 0.5)) * 2 * rng.uniform(0, 0.15)
    out = crop * rng.uniform(0.7, 1.3) * (1 + ramp[..., None]) + rng.uniform(-25, 25)
    out_mask = None
    if mask is not None:
        cut = Image.fromarray(mask[y0: y0 + ch, x0: x0 + cw].astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
        out_mask = np.asarray(cut) > 127
    return np.clip(out, 0, 255).astype(np.uint8), out_mask


def varied_case(root: Path, k: int, seed: int) -> Case:
    """KolektorSDD varied per image (seeded by the image's place, so every k and seed sees the same tests)."""
    base = mvtec_case(root, k, seed)
    tests, masks = [], []
    for i, (path, mask) in enumerate(zip(base.tests, base.masks or [], strict=True)):
        image, varied_mask = vary(_rgb(path), mask, np.random.default_rng(10_000 + i))
        tests.append(image)
        masks.append(varied_mask)
    split = next(iter(load_folder(root).values()))
    index = {s.path: i for i, s in enumerate(split.train)}
    references = [vary(_rgb(p), None, np.random.default_rng(20_000 + index[p]))[0] for p in base.references]
    return Case(references, tests, base.labels, masks, {})


def textile_case(k: int, seed: int) -> Case:
    from bench_textures import textile_references, textile_split

    pool, nominal, global_, local = textile_split()
    labels = np.r_[np.zeros(len(nominal)), np.ones(len(global_) + len(local))].astype(int)
    kind = np.array([0] * len(nominal) + [1] * len(global_) + [2] * len(local))
    return Case(textile_references(pool, k, seed), nominal + global_ + local, labels, None,
                {"global": kind != 2, "local": kind != 1})


def make_case(name: str, k: int, seed: int) -> Case:
    if name == "textile":
        return textile_case(k, seed)
    root = SHARED / ("kolektorsdd" if name.startswith("kolektor") else "mvtec_ad/bottle")
    if not root.is_dir():
        raise SystemExit(f"{root} not found: the benchmark needs the shared data next to the checkout")
    return varied_case(root, k, seed) if name == "kolektor-varied" else mvtec_case(root, k, seed)


def evaluate(case: Case, detector: Detector, dump: Path | None = None) -> dict[str, float]:
    """One fitted detector on one case -> the table's figures (NaN where a set has no pixel truth);
    ``dump``: an .npz of the per-image scores (labels, fused, memory, distribution), to compare fusions offline."""
    labels = case.labels.astype(bool)
    scores, flags, memory, distribution = [], [], [], []
    maps: list[np.ndarray] = []
    own: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    calibration = detector.calibration_
    for i, p in enumerate(detector.iter_predict(case.tests)):
        if not isinstance(p, Prediction):
            raise p
        scores.append(p.pred_score)
        flags.append(p.pred_label)
        memory.append(float(calibration.image(p.raw_score)))
        distribution.append(np.nan if p.distribution_score is None else p.distribution_score)
        if case.masks is not None:
            given = case.masks[i]
            mask = given if given is not None else np.zeros(p.anomaly_map.shape, bool)
            # float16 maps: the pixel metrics' exact histogram path, a quarter of the memory
            maps.append(np.clip(p.anomaly_map, -6e4, 6e4).astype(np.float16))
            own.append(p.pred_mask)
            truth.append(mask)
    scores_a, flags_a = np.array(scores), np.array(flags, bool)
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        np.savez(dump, labels=labels, fused=scores_a, memory=np.array(memory), distribution=np.array(distribution),
                 **{f"group_{g}": keep for g, keep in case.groups.items()})
    row = {"image_auroc": auroc(labels, scores_a), "flag_good": flags_a[~labels].mean(),
           "flag_defect": flags_a[labels].mean()}
    for group, keep in case.groups.items():
        row[f"auroc_{group}"] = auroc(labels[keep], scores_a[keep])
    if case.masks is not None:
        pixel = pixel_metrics(truth, maps)
        tp = sum(int((m & t).sum()) for m, t in zip(own, truth, strict=True))
        predicted, actual = sum(int(m.sum()) for m in own), sum(int(t.sum()) for t in truth)
        row.update(pixel_auroc=pixel["auroc"], pro=pixel["aupro"], f1_own=2 * tp / max(1, predicted + actual),
                   f1_max=pixel["f1max"])
    for name, values in (("memory", np.array(memory)), ("distribution", np.array(distribution))):
        if np.isnan(values).all():
            continue
        row[f"{name}_auroc"] = auroc(labels, values)
        row[f"{name}_good"] = (values[~labels] >= 0.5).mean()
        row[f"{name}_defect"] = (values[labels] >= 0.5).mean()
    return row


COLUMNS = [("image_auroc", "img AUROC"), ("pixel_auroc", "pix AUROC"), ("pro", "PRO"),
           ("flag_good", "flagged good"), ("flag_defect", "flagged defect"), ("f1_own", "pix F1 own"),
           ("f1_max", "pix F1-max"), ("memory_auroc", "mem AUROC"), ("memory_good", "mem good"),
           ("memory_defect", "mem defect"), ("distribution_auroc", "dist AUROC"), ("distribution_good", "dist good"),
           ("distribution_defect", "dist defect"), ("auroc_global", "AUROC global"), ("auroc_local", "AUROC local")]


def table(rows: dict[tuple[str, int], list[dict[str, float]]]) -> str:
    """Markdown table, mean over seeds ('-': not measured on that set)."""
    present = [(key, title) for key, title in COLUMNS if any(key in r for runs in rows.values() for r in runs)]
    lines = ["| set | k | seeds | " + " | ".join(t for _, t in present) + " |",
             "|---|---|---|" + "---|" * len(present)]
    for (name, k), runs in rows.items():
        cells = []
        for key, _ in present:
            values = [r[key] for r in runs if key in r]
            cells.append(f"{np.mean(values):.3f}" if values else "-")
        lines.append(f"| {name} | {k} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(sets: list[str], ks: list[int], seeds: int | None, settings: dict[str, str],
        log: Callable[[str], None] = print, dump: Path | None = None) -> dict[tuple[str, int], list[dict[str, float]]]:
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    for name in sets:
        for k in ks:
            for seed in range(seeds or DEFAULT_SEEDS[name]):
                start = time.perf_counter()
                case = make_case(name, k, seed)
                detector = Detector(settings or None, progress=False).fit(case.references)
                row = evaluate(case, detector, None if dump is None else dump / f"{name}-k{k}-seed{seed}.npz")
                rows.setdefault((name, k), []).append(row)
                plan = detector.plan_
                log(f"  {name} k={k} seed={seed}: {time.perf_counter() - start:.0f}s; plan texture={plan.texture} "
                    f"stationarity={plan.stationarity} views={len(plan.views)}; sources={detector.source_names}; "
                    f"{detector.calibration_.method}; " + ", ".join(f"{key} {v:.3f}" for key, v in row.items()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["kolektor", "textile", "bottle"], choices=SETS)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per set (default: " + ", ".join(f"{s} {n}" for s, n in DEFAULT_SEEDS.items()) + ")")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a detector setting, as the command line's --set (repeatable)")
    parser.add_argument("--dump", type=Path, default=None, help="a folder for per-image scores (.npz per case)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = dict(parse_assignment(text) for text in args.settings)
    print(f"settings: {settings or 'defaults'}", flush=True)
    print(table(run(args.sets, args.k, args.seeds, settings, lambda line: print(line, flush=True), args.dump)))


if __name__ == "__main__":
    main()
