"""Predict at the backbone's pace? Images/s, and the share of time spent outside the backbone forward.

    python benchmarks/bench_speed.py [--n 40] [--shots 4 16] [--batch-size 8] [--cli] [--parts]

API: ``Detector.predict`` on N bottle test images (900 x 900 PNG; synthetic images when the data is
absent), timing the backbone forward inside it: outside share = (predict - forward) / predict
(target <= 10% at k = 4 and 16). CLI (``--cli``): ``vandal predict`` on the same N images writing
overlays and masks (and ``--save-maps``), against (the API's forward time + process start-up),
start-up being a ``vandal predict`` run on one 64 x 64 image (targets 1.25 x and 1.35 x).
Decoding the files counts as outside the backbone, as a user sees it. ``--parts``: milliseconds per
image of the pieces outside it, each against what it replaced (PNG decoding by Pillow and by vandal's
libpng path; the map smoothing by conv1d passes and by banded matrices). Read the ratios: the seconds
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


def images(n: int, shots: int, workdir: Path, root: Path = BOTTLE) -> tuple[list, list[Path]]:
    if root.is_dir():
        train = sorted((root / "train" / "good").glob("*.png"))
        files = sorted((root / "test").rglob("*.png"))
    else:
        rng = np.random.default_rng(0)
        train, files = [], []
        for i in range(max(shots, 16) + 10):
            path = workdir / f"s{i}.png"
            Image.fromarray(rng.integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(path)
            (train if i < max(shots, 16) else files).append(path)
    return train, (files * (n // len(files) + 1))[:n]


def per_image_ms(function, items: list) -> float:
    function(items[0])
    start = time.perf_counter()
    for item in items:
        function(item)
    return 1000 * (time.perf_counter() - start) / len(items)


def parts(test: list[Path], size: int) -> None:
    """The pieces outside the backbone, each against what it replaced, in one run."""
    from vandal.data.images import load_image
    from vandal.scoring import smoothing

    pillow = per_image_ms(lambda p: np.asarray(Image.open(p).convert("RGB")), test)
    print(f"  decode {Image.open(test[0]).size} PNG: Pillow {pillow:.1f} ms, vandal (libpng for plain RGB) "
          f"{per_image_ms(load_image, test):.1f} ms per image")
    maps = [torch.rand(1, size, size) for _ in range(20)]
    matrices = per_image_ms(lambda m: smoothing.gaussian_smooth(m, 4.0), maps)
    side, smoothing.MATMUL_SIDE = smoothing.MATMUL_SIDE, 0  # every side above it: the conv1d passes
    convolutions = per_image_ms(lambda m: smoothing.gaussian_smooth(m, 4.0), maps)
    smoothing.MATMUL_SIDE = side
    print(f"  smoothing a {size} x {size} map (sigma 4): conv1d passes {convolutions:.2f} ms, banded matrices "
          f"{matrices:.2f} ms")


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


DEVICE = ["--device", "cpu"]  # main() sets the benchmark's device: the command must not pick another


def cli_command(model: Path, inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vandal.cli.main", "predict", str(model), *map(str, inputs), "--out", str(out),
            *DEVICE, *extra]


def cli_wall(model: Path, inputs: list[Path], out: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run(cli_command(model, inputs, out, *extra), check=True, capture_output=True)
    return time.perf_counter() - start


def concurrency(model: Path, inputs: list[Path], work: Path) -> None:
    """Two ``vandal predict`` runs at once against the same two one after the other (same inputs)."""
    import os

    # vandal's CLI sets OMP_WAIT_POLICY=PASSIVE unless the user set it; an empty value is OpenMP's own default.
    for label, env in (("OpenMP's default wait policy", {"OMP_WAIT_POLICY": ""}), ("vandal's PASSIVE", {})):
        environment = {**os.environ, **env}
        start = time.perf_counter()
        for i in range(2):
            subprocess.run(cli_command(model, inputs, work / f"seq{i}", "--overwrite"), check=True, capture_output=True,
                           env=environment)
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        runs = [subprocess.Popen(cli_command(model, inputs, work / f"par{i}", "--overwrite"), env=environment,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
        if any(run.wait() for run in runs):
            raise RuntimeError("a concurrent vandal predict failed")
        parallel = time.perf_counter() - start
        print(f"  2 x vandal predict on {len(inputs)} images ({label}): concurrent {parallel:.2f} s, sequential "
              f"{sequential:.2f} s = {parallel / sequential:.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--shots", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=BOTTLE, help="a bottle-like folder: train/good/*.png, test/**/*.png")
    parser.add_argument("--cli", action="store_true", help="also time the vandal predict command")
    parser.add_argument("--concurrency", action="store_true", help="also time 2 concurrent vs 2 sequential CLI runs")
    parser.add_argument("--parts", action="store_true", help="also time decoding and smoothing against what they replaced")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vandal-speed-"))
    train, test = images(args.n, max(args.shots), work, args.data)
    DEVICE[1] = args.device
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, batch size "
          f"{args.batch_size}; {len(test)} images ({args.data if args.data.is_dir() else 'synthetic'} 900x900)")
    if args.parts:
        parts(test[:20], Detector(progress=False, device=args.device).fit(train[:1]).embedder_.size)
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
        if args.concurrency:
            concurrency(model, test[:20], work)


if __name__ == "__main__":
    main()
