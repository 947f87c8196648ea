"""Images/s of ``vandal predict`` with the local engine and with ``--engine ray`` (1 and 2 workers) on
this machine, and Ray's fixed start-up cost.

    python benchmarks/bench_ray.py [--bottle DIR] [--n 60] [--shots 4]

The same saved detector and images (MVTec bottle test images, or synthetic ones), each run writing the
full outputs (overlays, masks, predictions.csv). Each Ray run starts and stops its own local cluster, as
the CLI does; its fixed cost is the wall time of a 1-image run less the local engine's time for that
image, and its steady rate is measured over the rest. One run each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vandal.data.images import load_image
from vandal.detector import Detector
from vandal.engines.ray_engine import ray_predict
from vandal.outputs.run import write_outputs

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


def inputs(bottle: Path, shots: int, n: int, folder: Path) -> tuple[list, list[Path], str]:
    if bottle.is_dir():
        test = sorted((bottle / "test").rglob("*.png"))[:n]
        return sorted((bottle / "train" / "good").glob("*.png"))[:shots], test, str(bottle)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i:04d}.png")
        Image.fromarray(rng.integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(paths[-1])
    return [load_image(p) for p in paths[:shots]], paths, "synthetic 900x900"


def seconds(run, *args, **kwargs) -> float:
    start = time.perf_counter()
    run(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bottle", type=Path, default=BOTTLE)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the local engine")
    args = parser.parse_args()
    cores = os.cpu_count()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        train, test, source = inputs(args.bottle, args.shots, args.n, work)
        model = work / "model"
        Detector(device="cpu", progress=False).fit(train).save(str(model))
        print(f"{cores} cores, load average {os.getloadavg()[0]:.1f}; images: {source}; {len(test)} images, "
              "outputs written (overlays, masks, csv)")
        local = Detector.load(str(model), device="cpu", progress=False)
        write_outputs(local, test[:1], work / "warm")
        one_local = seconds(write_outputs, local, test[:1], work / "l1")
        local_s = seconds(write_outputs, local, test, work / "local")
        print(f"local engine, {args.threads} thread(s) ({local_s:.1f} s): {len(test) / local_s:.2f} img/s")
        for workers in (1, 2):
            one = seconds(ray_predict, model, test[:1], work / f"r1-{workers}", num_workers=workers, device="cpu")
            total = seconds(ray_predict, model, test, work / f"ray-{workers}", num_workers=workers, device="cpu")
            fixed = one - one_local
            steady = (len(test) - 1) / max(1e-9, total - one)
            print(f"ray, {workers} worker(s) x {cores // workers} thread(s) ({total:.1f} s): {len(test) / total:.2f} "
                  f"img/s end to end; fixed start-up {fixed:.1f} s, then {steady:.2f} img/s")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
