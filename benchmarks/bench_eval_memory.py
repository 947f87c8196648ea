"""Peak memory of one category's evaluation: 200 test images scored at 518x518 (goal: under 4 GB).

Synthetic predictions (maps at the original size, as the detector returns them) go through the
same code path as ``vandal evaluate``: :class:`vandal.evaluate.CategoryAccumulator` (float16 maps at
the protocol size, masks read from PNG files) and its metrics (image, pixel, exact and legacy AU-PRO).
Prints the process's peak resident memory (ru_maxrss) after the imports and at the end.

    python benchmarks/bench_eval_memory.py [--images 200] [--size 900] [--protocol 518|native] [--no-legacy-pro]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vandal.data.datasets import Sample
from vandal.evaluate import CategoryAccumulator, MaskCache
from vandal.prediction import Prediction


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synthetic_prediction(rng: np.random.Generator, size: int, mask: np.ndarray | None) -> Prediction:
    """A smooth ``[size, size]`` float32 map (low-res noise upsampled) raised where the mask is."""
    coarse = rng.random((24, 24)).astype(np.float32)
    amap = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    if mask is not None:
        amap = amap + 0.6 * mask
    peak = float(amap.max())
    return Prediction(pred_score=peak, anomaly_map=amap.astype(np.float32), pred_label=peak > 0.5,
                      pred_mask=amap > 0.5, raw_score=peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=900, help="original image side (MVTec bottle: 900)")
    parser.add_argument("--protocol", choices=("518", "native"), default="518")
    parser.add_argument("--no-legacy-pro", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"peak RSS after imports: {peak_mib():.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        samples = []
        for i in range(args.images):
            if i % 2:  # half anomalous, with a mask file like MVTec's ground_truth
                mask = np.zeros((args.size, args.size), dtype=bool)
                y, x = rng.integers(0, args.size - args.size // 6, 2)
                mask[y: y + args.size // 6, x: x + args.size // 8] = True
                path = Path(tmp) / f"{i:03d}_mask.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(path)
                samples.append((Sample(Path(f"{i:03d}.png"), 1, path, "defect", "synthetic"), mask))
            else:
                samples.append((Sample(Path(f"{i:03d}.png"), 0, None, "good", "synthetic"), None))
        start = time.perf_counter()
        acc = CategoryAccumulator(args.protocol, MaskCache(args.protocol))
        for sample, mask in samples:
            acc.add(sample, synthetic_prediction(rng, args.size, mask))
        accumulated = time.perf_counter() - start
        maps_mib = sum(m.nbytes for m in acc.maps) / 2**20
        print(f"accumulated {args.images} maps ({args.size}x{args.size} -> protocol {args.protocol}, float16: "
              f"{maps_mib:.0f} MiB) in {accumulated:.1f}s; peak RSS {peak_mib():.0f} MiB")
        start = time.perf_counter()
        metrics = acc.metrics(legacy_pro=not args.no_legacy_pro)
        print(f"metrics in {time.perf_counter() - start:.1f}s: "
              + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if v is not None))
    peak = peak_mib()
    print(f"peak RSS (ru_maxrss): {peak:.0f} MiB = {peak / 1024:.2f} GiB ({'under' if peak < 4096 else 'OVER'} the 4 GB goal)")


if __name__ == "__main__":
    main()
