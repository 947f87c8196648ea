"""Time pixel metrics and exact vs legacy AU-PRO on a synthetic test set.

    python benchmarks/bench_metrics.py [--n 200 --size 518 --dtype float16 --repeat 3]

Maps are smooth noise plus bumps on blob-shaped anomalies; about half of the images hold 1-3
anomalous blobs. Peak memory: tracemalloc's peak of numpy allocations inside ``pixel_metrics``
(beyond the inputs) and the process's ``ru_maxrss`` at the end.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from vandal.metrics import aupro, aupro_legacy, pixel_metrics


def synthetic(n: int, size: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """masks [n,size,size] bool and maps [n,size,size] of ``dtype``."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    maps = np.empty((n, size, size), dtype=dtype)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    for i in range(n):
        coarse = rng.random((size // 32 + 2, size // 32 + 2)).astype(np.float32)
        amap = ndimage.zoom(coarse, size / coarse.shape[0], order=1)[:size, :size] * 0.5
        amap += 0.1 * rng.random((size, size), dtype=np.float32)
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.random(2)
                ry, rx = 0.02 + 0.08 * rng.random(2)
                # A lumpy ellipse: radius modulated by angle gives non-convex blobs.
                ang = np.arctan2(yy - cy, xx - cx)
                lump = 1 + 0.3 * np.sin(3 * ang + rng.random() * 6.28)
                d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
                blob = d < lump**2
                masks[i] |= blob
                amap += 0.6 * np.exp(-d / 2) * (0.5 + rng.random())
        maps[i] = amap
    return masks, maps


def best_of(repeat: int, fn: Callable, *args: object) -> tuple[object, float]:
    """Result and the fastest of ``repeat`` wall-clock timings (the machine may be shared)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return result, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best-of for the fast metrics")
    parser.add_argument("--skip-legacy", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    masks, maps = synthetic(args.n, args.size, args.dtype, args.seed)
    n_anom = int(masks.reshape(len(masks), -1).any(1).sum())
    mib = (masks.nbytes + maps.nbytes) / 2**20
    print(f"data: {args.n} x {args.size}x{args.size} {args.dtype}, {n_anom} anomalous images, "
          f"{masks.mean():.4f} anomalous pixel fraction, inputs {mib:.0f} MiB "
          f"(generated in {time.perf_counter() - t0:.1f} s)")

    result, t_pixel = best_of(args.repeat, pixel_metrics, masks, maps)
    print(f"pixel_metrics: {t_pixel:.2f} s  " + "  ".join(f"{k}={v:.4f}" for k, v in result.items()))
    exact, t_exact = best_of(args.repeat, aupro, masks, maps)
    print(f"aupro (exact): {t_exact:.2f} s  value={exact:.4f}")

    if not args.skip_legacy:
        legacy, t_legacy = best_of(1, aupro_legacy, masks, maps)
        print(f"aupro_legacy (200 thresholds): {t_legacy:.2f} s  value={legacy:.4f}")
        print(f"speedup legacy/exact: {t_legacy / t_exact:.0f}x (goal >= 50x)")

    tracemalloc.start()
    pixel_metrics(masks, maps)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"pixel_metrics peak extra allocation (tracemalloc): {peak / 2**20:.0f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    print(f"process peak RSS (ru_maxrss, includes data generation): {rss:.0f} MiB (goal < 4096)")


if __name__ == "__main__":
    main()
