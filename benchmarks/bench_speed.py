"""Predict at the backbone's pace? Images/s, and the share of time spent outside the backbone forward.

    python benchmarks/bench_speed.py [--n 40] [--shots 4 16] [--batch-size 8] [--cli]

API: ``Detector.predict`` on N bottle test images (900 x 900 PNG; synthetic images when the data is
absent), timing the backbone forward inside it: outside share = (predict - forward) / predict
(target <= 10% at k = 4 and 16). CLI (``--cli``): ``vandal predict`` on the same N images writing
overlays and masks (and ``--save-maps``), against (the API's forward time + process start-up),
start-up being a ``vandal predict`` run on one 64 x 64 image (targets 1.25 x and 1.35 x).
Decoding the files counts as outside the backbone, as a user sees it. Read the ratios: the seconds
move with whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
        if pixels.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def images(n: int, shots: int, workdir: Path) -> tuple[list, list[Path]]:
    if BOTTLE.is_dir():
        train = sorted((BOTTLE / "train" / "good").glob("*.png"))
        files = sorted((BOTTLE / "test").rglob("*.png"))
    else:
        rng = np.random.default_rng(0)
        train, files = [], []
        for i in range(max(shots, 16) + 10):
            path = workdir / f"s{i}.png"
            Image.fromarray(rng.integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(path)
            (train if i < max(shots, 16) else files).append(path)
    return train, (files * (n // len(files) + 1))[:n]


def api(detector: Detector, test: list[Path]) -> tuple[float, float]:
    """(predict seconds, backbone forward seconds) for ``test``."""
    detector.predict(test[:2])  # warm-up
    timed = TimedBackbone(detector.embedder_.backbone)
    detector.embedder_.backbone = timed
    start = time.perf_counter()
    detector.predict(test)
    total = time.perf_counter() - start
    detector.embedder_.backbone = timed.inner
    return total, timed.seconds


def cli_wall(model: Path, inputs: list[Path], out: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "vandal.cli.main", "predict", str(model), *map(str, inputs), "--out", str(out),
               *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--shots", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cli", action="store_true", help="also time the vandal predict command")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vandal-speed-"))
    train, test = images(args.n, max(args.shots), work)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, batch size "
          f"{args.batch_size}; {len(test)} images ({'bottle' if BOTTLE.is_dir() else 'synthetic'} 900x900)")
    for k in args.shots:
        detector = Detector(progress=False, batch_size=args.batch_size, device=args.device)
        start = time.perf_counter()
        detector.fit(train[:k])
        fit_seconds = time.perf_counter() - start
        total, forward = api(detector, test)
        outside = total - forward
        print(f"k={k}: fit {fit_seconds:.2f} s; predict {len(test) / total:.2f} img/s ({total:.2f} s), backbone "
              f"forward {forward:.2f} s, outside {100 * outside / total:.1f}% (target <= 10%)")
        if not args.cli or k != args.shots[0]:
            continue
        model = work / f"model{k}"
        detector.save(str(model))
        tiny = work / "tiny.png"
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tiny)
        startup = cli_wall(model, [tiny], work / "o-start")
        for extra, target in (((), 1.25), (("--save-maps",), 1.35)):
            wall = cli_wall(model, test, work / f"o{len(extra)}", *extra)
            ratio = wall / (forward + startup)
            print(f"  CLI {' '.join(extra) or '(overlays + masks)'}: {wall:.2f} s wall = {ratio:.2f} x (forward "
                  f"{forward:.2f} s + start-up {startup:.2f} s) (target <= {target} x)")


if __name__ == "__main__":
    main()
