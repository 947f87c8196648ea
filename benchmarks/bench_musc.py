"""MuSc (``--preset musc``) against today's ``mutual-batch`` zero-shot on the simulated textile, whose
images have no pixel masks (``vandal evaluate`` needs masks): image AUROC only.

Protocol: the fixed textile draws of ``bench_textures.textile_split`` (seeded), the first ``--per-class``
of each (nominal, global, local), all scored in ONE transductive predict call per method (every image
against the others). Prints image AUROC of nominal vs all defects, vs global and vs local, and seconds.
Bottle and KolektorSDD are measured with ``vandal evaluate`` (README).

    python benchmarks/bench_musc.py [--per-class 50] [--methods musc mutual-batch] [--set taps=16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_textures import textile_split

from vandal.detector import Detector
from vandal.metrics import auroc

METHODS = {"musc": {"preset": "musc"}, "mutual-batch": {"mutual": "batch"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config fields on top of each method (as vandal's --set), e.g. taps=16")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    _, nominal, global_, local = textile_split()
    n = args.per_class
    files = nominal[:n] + global_[:n] + local[:n]
    kind = np.array([0] * n + [1] * n + [2] * n)
    for method in args.methods:
        start = time.perf_counter()
        predictions = Detector(progress=False, device="cpu", **METHODS[method], **settings).fit().predict([str(f) for f in files])
        scores = np.array([p.pred_score for p in predictions])
        seconds = time.perf_counter() - start
        normal = kind == 0
        parts = {name: auroc(np.r_[np.zeros(normal.sum()), np.ones((kind == k).sum())],
                             np.r_[scores[normal], scores[kind == k]]) for name, k in (("global", 1), ("local", 2))}
        print(f"{method}: textile {3 * n} images, image AUROC all {auroc((kind > 0).astype(int), scores):.3f}, "
              f"global {parts['global']:.3f}, local {parts['local']:.3f} ({seconds:.0f} s, loaded machine)",
              flush=True)


if __name__ == "__main__":
    main()
