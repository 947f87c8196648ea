"""Peak memory per image pixel of fit (k = 1) and predict on large images (target: <= 16 bytes/pixel).

For each side N (default 1000, 3000, 6000) a synthetic N x N RGB PNG is written, and three runs each
start in a fresh process with the default detector (EfficientNet-Lite2, squash):

- ``fit``: ``Detector().fit([path])`` with one reference (k = 1: perturbed-reference calibration);
- ``predict``: ``detector.predict([path])`` (the Prediction, map and mask, is kept);
- ``predict+write``: :func:`vandal.outputs.run.write_outputs` as ``vandal predict --save-maps`` does it
  (overlay and mask PNG, float16 map .npy).

The model is built once and reused (``create_backbone`` is patched to return it). Peak = the
kernel's resident high-water mark (VmHWM, reset through /proc/self/clear_refs just before the call;
Linux only) above the resident memory at the call's start. The model's own share (code paths warmed,
backbone activations, buffers) is the same run's peak on a 64 x 64 image; the figure is
``(peak - model's own) / N^2``.

``--profile`` also prints the peak above the call's start reached inside each step (decode, views,
backbone, merge, calibration, overlay, PNG, npy, augmentation), from the same high-water mark reset
around each step.

    python benchmarks/bench_memory.py [--sizes 1000 3000 6000] [--profile]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

RUNS = ("fit", "predict", "predict+write")


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (and ru_maxrss) to the current RSS


def synthetic_png(path: Path, side: int) -> None:
    """A textured N x N RGB PNG (smooth shading + fine noise), so PNG decoding does real work."""
    rng = np.random.default_rng(side)
    coarse = rng.integers(60, 200, (8, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR))
    image = image + rng.integers(0, 24, (side, side, 1), dtype=np.uint8)
    Image.fromarray(image).save(path, compress_level=1)


# --------------------------------------------------------------------------- profiling

class StepPeaks:
    """Peak resident memory above ``origin`` inside each wrapped step, from VmHWM resets.

    Each step resets the high-water mark on entry; the enclosing steps keep the maximum read so far
    on a stack, so nesting loses no peak. ``top`` is the peak outside any step."""

    def __init__(self, origin_kib: int):
        self.origin = origin_kib
        self.peaks: dict[str, int] = {}
        self.stack: list[int] = []
        self.top = 0

    def _fold(self, value: int) -> None:
        if self.stack:
            self.stack[-1] = max(self.stack[-1], value)
        else:
            self.top = max(self.top, value)

    def wrap(self, owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def wrapped(*args, **kwargs):
            self._fold(_status_kib("VmHWM"))
            self.stack.append(0)
            _reset_peak()
            try:
                return inner(*args, **kwargs)
            finally:
                mine = max(self.stack.pop(), _status_kib("VmHWM"))
                self.peaks[label] = max(self.peaks.get(label, 0), mine - self.origin)
                self._fold(mine)

        setattr(owner, name, wrapped)


def _profile(origin_kib: int) -> StepPeaks:
    import vandal.data.images as images
    import vandal.data.layout as layout
    import vandal.detector as detector
    import vandal.memory.augment as augment
    import vandal.object_scoring as objects
    import vandal.outputs.run as report
    import vandal.scoring.levels as calibration

    steps = StepPeaks(origin_kib)
    steps.wrap(images, "load_image", "decode (load_image)")
    steps.wrap(layout, "to_input", "views (to_input: resize to the backbone size)")
    steps.wrap(detector.Detector, "_embed", "backbone (_embed)")
    steps.wrap(objects, "merge_views", "merge_views (map to H x W)")
    steps.wrap(calibration.Calibration, "pixel", "calibration.pixel")
    steps.wrap(detector.Detector, "_prediction", "_prediction (fuse + calibrate + mask)")
    steps.wrap(report, "overlay", "overlay (visualize)")
    steps.wrap(report, "write_png", "write_png (overlay and mask PNG)")
    steps.wrap(report, "write_npy", "write_npy (float16 map)")
    steps.wrap(augment, "apply_transform", "apply_transform (k=1 calibration views)")
    return steps


# --------------------------------------------------------------------------- one run per process

def _measure(action, profile: bool = False) -> tuple[int, dict]:
    """Peak resident KiB above the start of ``action()`` (and the per-step peaks with ``profile``)."""
    gc.collect()
    before = _status_kib("VmRSS")
    steps = _profile(before) if profile else None
    _reset_peak()
    action()
    peak = _status_kib("VmHWM")
    if steps is not None:
        peak = max(peak, steps.top)
    return peak - before, steps.peaks if steps else {}


def child(run: str, path: Path, warm: Path, profile: bool) -> dict:
    import torch

    import vandal.detector as detector_module
    from vandal.backbones import create_backbone
    from vandal.detector import Detector
    from vandal.outputs.run import write_outputs

    torch.set_num_threads(1)
    backbone = create_backbone(device="cpu")
    detector_module.create_backbone = lambda *args, **kwargs: backbone  # the model counts once
    detector = Detector(device="cpu", progress=False).fit([warm])
    with tempfile.TemporaryDirectory() as out:
        def act(image: Path) -> None:
            if run == "fit":
                Detector(device="cpu", progress=False).fit([image])
            elif run == "predict":
                kept = detector.predict([image])  # noqa: F841 (the result is part of the cost)
            else:
                write_outputs(detector, [image], Path(out) / image.stem, save_maps=True)

        act(warm)  # warm every code path once
        # The model's own: the same run on a tiny image (backbone activations, buffers, code).
        own, _ = _measure(lambda: act(warm))
        peak, steps = _measure(lambda: act(path), profile)
    return {"peak_kib": peak, "own_kib": own, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 6000])
    parser.add_argument("--profile", action="store_true", help="also print the peak inside each step")
    parser.add_argument("--child", nargs=3, metavar=("RUN", "PATH", "WARM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run, path, warm = args.child
        print(json.dumps(child(run, Path(path), Path(warm), args.profile)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.png"
        synthetic_png(warm, 64)
        print(f"{'side':>6} {'run':>14} {'peak above start':>17} {'model own':>10} {'bytes/pixel':>12}")
        for side in args.sizes:
            path = Path(tmp) / f"image_{side}.png"
            synthetic_png(path, side)
            for run in RUNS:
                command = [sys.executable, __file__, "--child", run, str(path), str(warm)]
                result = subprocess.run(command + (["--profile"] if args.profile else []),
                                        check=True, capture_output=True, text=True)
                measured = json.loads(result.stdout.strip().splitlines()[-1])
                peak, own = measured["peak_kib"] * 1024, measured["own_kib"] * 1024
                per_pixel = max(0, peak - own) / side ** 2
                print(f"{side:>6} {run:>14} {peak / 2**20:>13.0f} MiB {own / 2**20:>6.0f} MiB {per_pixel:>12.1f}",
                      flush=True)
                for label, kib in sorted(measured["steps"].items(), key=lambda item: -item[1]):
                    print(f"{'':>22} {kib * 1024 / side ** 2:>6.1f} B/px  {label}")
            path.unlink()


if __name__ == "__main__":
    main()
