"""Images/s of the torch detector and of its ONNX export run by onnxruntime, on the CPU, same images.

    python benchmarks/bench_onnx.py [--bottle DIR] [--n 40] [--shots 4] [--threads N]

Fits the default detector on k MVTec bottle ``train/good`` images (synthetic 900 x 900 images when the
folder is absent), exports it, and predicts the same test images with both (decoding included, one
warm-up image each, one timed run). Also prints the largest score and map differences and whether
every label agrees.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vandal.data.images import load_image
from vandal.detector import Detector
from vandal.export import OnnxDetector, export_onnx

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


def images(bottle: Path, shots: int, n: int) -> tuple[list, list, str]:
    if bottle.is_dir():
        test = sorted((bottle / "test").rglob("*.png"))
        return sorted((bottle / "train" / "good").glob("*.png"))[:shots], (test * (n // len(test) + 1))[:n], str(bottle)
    rng = np.random.default_rng(0)
    make = lambda: rng.integers(0, 255, (900, 900, 3), dtype=np.uint8)  # noqa: E731
    return [make() for _ in range(shots)], [make() for _ in range(n)], "synthetic 900x900"


def timed(detector, test: list) -> tuple[list, float]:
    detector.predict(test[:1])  # warm-up: first-run allocations, onnxruntime's graph optimisation
    start = time.perf_counter()
    predictions = detector.predict(test)
    return predictions, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bottle", type=Path, default=BOTTLE)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test, source = images(args.bottle, args.shots, args.n)
    print(f"torch {torch.__version__}, {args.threads} threads (onnxruntime too), load average "
          f"{os.getloadavg()[0]:.1f}; images: {source}; "
          f"k = {args.shots}, {len(test)} test images")
    detector = Detector(device="cpu", progress=False).fit([load_image(x) for x in train])
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = export_onnx(detector, Path(folder) / "model.onnx")
        print(f"export: {time.perf_counter() - start:.1f} s, {path.stat().st_size / 2**20:.1f} MiB")
        onnx = OnnxDetector(path, device="cpu", progress=False, threads=args.threads)
        torch_out, torch_s = timed(detector, test)
        onnx_out, onnx_s = timed(onnx, test)
    print(f"torch:       {len(test) / torch_s:.2f} img/s ({torch_s:.2f} s)")
    print(f"onnxruntime: {len(test) / onnx_s:.2f} img/s ({onnx_s:.2f} s)")
    score = max(abs(a.pred_score - b.pred_score) for a, b in zip(torch_out, onnx_out))
    maps = max(float(np.abs(a.anomaly_map - b.anomaly_map).max()) for a, b in zip(torch_out, onnx_out))
    same = sum(a.pred_label == b.pred_label for a, b in zip(torch_out, onnx_out))
    print(f"parity: max |score difference| {score:.2e}, max |map difference| {maps:.2e}, "
          f"labels agree on {same}/{len(test)}")


if __name__ == "__main__":
    main()
