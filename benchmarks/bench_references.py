"""Many references: fit time, predict time per image, peak memory and MVTec bottle AUROC for
1 to 200 references, with and without the 11 augmented views, with every bank row or a coreset.

Each configuration runs in its own process (one torch thread), so its peak resident memory
(ru_maxrss) is its own. References: the first k of train/good's seeded permutation (sample_shots,
seed 0), given to ``Detector.fit`` as paths (fit time includes decoding them). Predict time: the
``--n-test`` test images spread evenly over the test set, decoded before timing, one
``Detector.predict`` call. AUROC (image; pixel at the original resolution) over the whole test set
unless ``--no-auroc``. Budget 0 = no coreset (every row kept).

    python benchmarks/bench_references.py [--refs 1 4 16 64 200] [--augment 0 1] [--budget 0 16]
        [--n-test 10] [--no-auroc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# shared/ sits next to the checkout (one level further up from a worktree under wt/)
DEFAULT_ROOT = next((p / "shared/data/mvtec_ad/bottle" for p in Path(__file__).resolve().parents
                     if (p / "shared/data/mvtec_ad/bottle").is_dir()), Path("shared/data/mvtec_ad/bottle"))
COLUMNS = ("refs", "augment", "budget", "bank rows", "fit s (coreset, calibration)", "predict s/img", "peak RSS MB (fit / end)",
           "image thr", "image AUROC", "pixel AUROC", "flagged good / defect")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(module, name: str, spent: dict[str, float], label: str) -> None:
    """Wrap ``module.name`` so that the seconds spent in it add up in ``spent[label]``."""
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)


def evaluate(detector, tests) -> dict:
    """Image and pixel AUROC and the flagged rates over ``tests`` (scored from their paths, one at a time)."""
    from vandal.data.datasets import load_mask
    from vandal.metrics import auroc

    scores, labels, maps, masks, flagged = [], [], [], [], []
    for sample, prediction in zip(tests, detector.iter_predict([s.path for s in tests]), strict=True):
        scores.append(prediction.pred_score)
        labels.append(sample.label)
        flagged.append(prediction.pred_label)
        maps.append(prediction.anomaly_map.ravel())
        mask = load_mask(sample.mask_path) if sample.mask_path else np.zeros(prediction.anomaly_map.shape, bool)
        masks.append(mask.ravel())
    labels, flagged = np.array(labels), np.array(flagged)
    return {"image_auroc": auroc(labels, np.array(scores)),
            "pixel_auroc": auroc(np.concatenate(masks), np.concatenate(maps)),
            "flagged_good": float(flagged[labels == 0].mean()), "flagged_defect": float(flagged[labels == 1].mean())}


def run_one(args: argparse.Namespace) -> dict:
    """One configuration in this process -> its figures."""
    import torch

    import vandal.calibration
    import vandal.memory.bank
    from vandal.data.datasets import load_folder
    from vandal.data.images import load_image
    from vandal.data.sampling import sample_shots
    from vandal.detector import Detector

    torch.set_num_threads(1)
    spent: dict[str, float] = {}
    timed(vandal.memory.bank, "greedy_k_centre", spent, "coreset")
    timed(vandal.memory.bank, "reduce_grouped", spent, "coreset")
    timed(vandal.calibration, "calibrate_sources", spent, "calibrate")
    split = next(iter(load_folder(args.root).values()))
    references = [s.path for s in sample_shots(split.train, args.refs, 0)]
    detector = Detector(augment=bool(args.augment), coreset=args.budget or None, device="cpu", progress=False)
    start = time.perf_counter()
    detector.fit(references)
    fit = time.perf_counter() - start
    rss_fit = peak_mb()
    memory = next(s for s in detector.sources_ if s.name == "memory")
    step = max(1, len(split.test) // args.n_test)
    images = [load_image(s.path) for s in split.test[::step][: args.n_test]]
    detector.predict(images[:1])  # warm-up: first-call allocations are not the bank search
    start = time.perf_counter()
    detector.predict(images)
    predict = (time.perf_counter() - start) / len(images)
    del images
    out = {"refs": args.refs, "augment": args.augment, "budget": args.budget, "fit_s": fit, "coreset_s": spent.get("coreset", 0.0),
           "calibrate_s": spent.get("calibrate", 0.0), "predict_s": predict,
           "rss_fit_mb": rss_fit, "bank_rows": {k: len(b) for k, b in memory.banks.banks.items()},
           "image_threshold": detector.calibration_.image_threshold, "calibration": detector.calibration_.method,
           "neighbourhood": list(memory.neighbourhood), "sources": detector.source_names}
    if args.auroc:
        out.update(evaluate(detector, split.test))
    out["rss_mb"] = peak_mb()
    return out


def row(r: dict) -> str:
    quality = (f"{r['image_auroc']:.4f} | {r['pixel_auroc']:.4f} | {r['flagged_good']:.2f} / "
               f"{r['flagged_defect']:.2f}") if "image_auroc" in r else "- | - | -"
    return (f"| {r['refs']} | {r['augment']} | {r['budget'] or 'all'} | {max(r['bank_rows'].values())} | "
            f"{r['fit_s']:.1f} ({r['coreset_s']:.1f}, {r['calibrate_s']:.1f}) | {r['predict_s']:.3f} | {r['rss_fit_mb']:.0f} / {r['rss_mb']:.0f} | "
            f"{r['image_threshold']:.3f} | {quality} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--refs", type=int, nargs="+", default=[1, 4, 16, 64, 200])
    parser.add_argument("--augment", type=int, nargs="+", default=[0, 1], help="0 = off, 1 = the 11 views")
    parser.add_argument("--budget", type=int, nargs="+", default=[0, 16],
                        help="memory.coreset in reference views; 0 = keep every row")
    parser.add_argument("--n-test", type=int, default=10, help="test images in the timed predict call")
    parser.add_argument("--no-auroc", dest="auroc", action="store_false", help="skip the AUROC over the test set")
    parser.add_argument("--json", type=Path, default=None, help="also append each result here (JSON lines)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.refs, args.augment, args.budget = args.refs[0], args.augment[0], args.budget[0]
        print(json.dumps(run_one(args)))
        return
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} not found: pass --root to the MVTec AD bottle folder")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for augment in args.augment:
        for refs in args.refs:
            for budget in args.budget:
                command = [sys.executable, __file__, "--one", "--root", str(args.root), "--refs", str(refs),
                           "--augment", str(augment), "--budget", str(budget), "--n-test", str(args.n_test)]
                done = subprocess.run(command + ([] if args.auroc else ["--no-auroc"]), capture_output=True,
                                      text=True, env=env)
                if done.returncode != 0:
                    print(f"| {refs} | {augment} | {budget} | failed: {done.stderr.strip().splitlines()[-1:]} |")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                print(row(result), flush=True)
                if args.json:
                    with args.json.open("a") as log:
                        log.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
