"""Scoring and evaluating on a Ray cluster (the ``ray`` extra): more images than one machine scores.

``vandal predict MODEL PATHS --out OUT --engine ray``: the inputs (local files and folders, or URIs that
pyarrow's filesystems read: ``s3://``, ``gs://``, ``file://``...) become a Ray Dataset of (index, path,
output stem); :class:`Scorer`, a callable class run by ``map_batches`` on an actor pool, loads the
model once per worker (a bundle folder or an ``.onnx`` file, shipped through the object store so
workers need no shared disk), reads and scores each image with the detector's own ``predict_image``
and encodes its files with the local engine's :func:`~vandal.report.prediction_files`. The driver
writes them to OUT as they arrive, then ``predictions.csv`` (same rows, same names as the local
engine) and ``predictions.parquet`` (the same table with full-precision scores).

``vandal evaluate --engine ray``: each (category, shots, seed) cell is a task on an actor that keeps
its backbone loaded; the driver stores every finished cell at once (same ``results.json``, same resume).

Without an address a local cluster starts on this machine; with one, the run joins that cluster (then
inputs, dataset roots and OUT are paths as the workers and the driver see them). Each worker gets an
equal share of the cores and sets its torch, BLAS and onnxruntime threads to that share: oversubscribed
workers run far slower than fewer, well-sized ones.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BATCH_SIZE = 4  # images per map_batches call: small, so the workers share the tail of a run evenly
CPUS_PER_DEFAULT_WORKER = 4  # with no --num-workers: one worker per 4 cores (or one per GPU)


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError("--engine ray needs the ray extra: pip install 'vandal[ray]'") from error
    return ray


@contextmanager
def cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Join ``address`` or start a local cluster (``num_cpus``: its size, default all cores), shut down on
    exit; a cluster this process already joined is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    quiet = logging.getLogger("ray.data")  # one INFO line per plan and stage: our summary says what matters
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        yield ray
    finally:
        quiet.setLevel(level)
        ray.shutdown()


@dataclass(frozen=True)
class Share:
    """What each worker gets: CPUs (its torch/BLAS thread count is the whole part) and GPUs."""

    workers: int
    cpus: float
    gpus: float

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))

    def remote_args(self) -> dict[str, Any]:
        env = {name: str(self.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        return {"num_cpus": self.cpus, "num_gpus": self.gpus, "runtime_env": {"env_vars": env}}


def worker_share(resources: dict[str, float], num_workers: int | None, device: str) -> Share:
    """Split the cluster's ``resources`` (``ray.cluster_resources()``) among the workers."""
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    on_gpu = device == "cuda" or (device == "auto" and gpus > 0)
    if device == "cuda" and gpus == 0:
        raise RuntimeError("--device cuda was asked for, but the Ray cluster has no GPU; use --device cpu")
    if num_workers is None:
        num_workers = int(gpus) if on_gpu else max(1, int(cpus) // CPUS_PER_DEFAULT_WORKER)
    if num_workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {num_workers}")
    if num_workers > cpus:
        raise ValueError(f"--num-workers {num_workers} is more than the cluster's {cpus:g} CPUs; use at most "
                         f"{int(cpus)}")
    per_cpu = max(1.0, math.floor(cpus / num_workers)) if cpus >= num_workers else 1.0
    return Share(num_workers, per_cpu, min(1.0, gpus / num_workers) if on_gpu else 0.0)


def set_threads(threads: int) -> None:
    """This process's torch threads (BLAS reads its variables at start: :meth:`Share.remote_args` sets them)."""
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------- inputs


def is_uri(path: str) -> bool:
    return "://" in str(path)


def list_uri(uri: str, recursive: bool = False) -> list[str]:
    """Image files at a pyarrow filesystem URI (a file, or a folder listed in name order)."""
    from pyarrow import fs as pafs

    from ..data.images import IMAGE_EXTENSIONS

    filesystem, root = pafs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri} does not exist")
    if info.type == pafs.FileType.File:
        return [uri]
    found = filesystem.get_file_info(pafs.FileSelector(root, recursive=recursive))
    names = sorted(f.path for f in found if f.type == pafs.FileType.File and not Path(f.path).name.startswith(".")
                   and f.path.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(f"no images found in {uri} (looked for {', '.join(IMAGE_EXTENSIONS)}"
                         f"{'' if recursive else '; subfolders are not searched: pass --recursive'})")
    return [f"{scheme}://{name}" for name in names]  # file:// + /abs/path, s3:// + bucket/key


def read_image(path: str) -> np.ndarray:
    """A local path as the local engine reads it, or a URI's bytes through pyarrow, decoded the same way."""
    from ..data.images import decode_bytes, load_image

    if not is_uri(path):
        return load_image(path)
    from pyarrow import fs as pafs

    from ..data.pixels import UnreadableImageError

    try:
        filesystem, name = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_file(name) as handle:
            data = handle.read()
    except (OSError, ValueError) as error:
        raise UnreadableImageError(f"{path}: cannot read ({error})") from error
    return decode_bytes(data, path)


# ---------------------------------------------------------------------------------------- model


def model_files(model: str | os.PathLike) -> dict[str, bytes]:
    """A bundle folder's files, or an ``.onnx`` file (with its ``.data``), by name: what workers rebuild it from."""
    model = Path(model)
    if model.is_dir():
        return {p.name: p.read_bytes() for p in sorted(model.iterdir()) if p.is_file()}
    if model.suffix == ".onnx" and model.is_file():
        extra = Path(f"{model}.data")
        return {model.name: model.read_bytes(), **({extra.name: extra.read_bytes()} if extra.is_file() else {})}
    raise FileNotFoundError(f"{model}: not a saved detector folder or an .onnx file")


def load_model(files: dict[str, bytes], device: str, threads: int, folder: str) -> Any:
    """Write ``files`` (:func:`model_files`) to ``folder`` and load them: a Detector or an OnnxDetector."""
    for name, data in files.items():
        Path(folder, name).write_bytes(data)
    onnx = [name for name in files if name.endswith(".onnx")]
    if onnx:
        from ..export.onnx_detector import OnnxDetector

        return OnnxDetector(Path(folder, onnx[0]), device=device, progress=False, threads=threads)
    from ..detector import Detector

    return Detector.load(folder, device=device, progress=False)


class Scorer:
    """Ray Data's callable class: loads the model once per worker, then scores batches of paths.

    Each row out: index, path, pred_score, raw_score, pred_label, error (unreadable: the reason) and the
    encoded files (``files``: names, ``blobs``: bytes) that the driver writes.
    """

    def __init__(self, model_ref: list, device: str, threads: int, thresholds: dict[str, float], save_maps: bool):
        import ray

        from ..scoring.calibration import DECISION_LEVEL

        set_threads(threads)
        self.folder = tempfile.mkdtemp(prefix="vandal-model-")
        files = ray.get(model_ref[0])
        self.detector = load_model(files, "cuda" if device == "cuda" else "cpu", threads, self.folder)
        if thresholds:
            self.detector.set_params(**thresholds)
        self.level = self.detector.config.post.pixel_threshold or DECISION_LEVEL
        self.save_maps = save_maps

    def score(self, path: str, stem: str) -> dict[str, Any]:
        from ..data.pixels import UnreadableImageError
        from ..report import prediction_files

        try:
            image = read_image(path)
        except UnreadableImageError as error:
            return {"pred_score": math.nan, "raw_score": math.nan, "pred_label": False, "error": str(error),
                    "files": [], "blobs": []}
        prediction = self.detector.predict_image(image, path)
        files = prediction_files(stem, image, prediction, self.level, self.save_maps)
        return {"pred_score": prediction.pred_score, "raw_score": float(prediction.raw_score),
                "pred_label": bool(prediction.pred_label), "error": "", "files": list(files),
                "blobs": list(files.values())}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self.score(str(path), str(stem)) for path, stem in zip(batch["path"], batch["stem"])]
        out: dict[str, list] = {"index": [int(i) for i in batch["index"]], "path": [str(p) for p in batch["path"]]}
        for key in ("pred_score", "raw_score", "pred_label", "error", "files", "blobs"):
            out[key] = [row[key] for row in rows]
        return out


def _results(ray, paths: list[str], stems: list[str], files_ref: Any, share: Share, device: str,
             thresholds: dict[str, float], save_maps: bool) -> Iterator[dict[str, Any]]:
    """Score every path on the actor pool; rows come back in input order."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows and files in input order, as the local engine
    batch_size = max(1, min(BATCH_SIZE, math.ceil(len(paths) / share.workers)))
    items = [{"index": i, "path": p, "stem": s} for i, (p, s) in enumerate(zip(paths, stems))]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    # The model travels as a reference inside a list: small arguments, fetched once per worker.
    scored = dataset.map_batches(
        Scorer, fn_constructor_kwargs={"model_ref": [files_ref], "device": "cuda" if share.gpus else "cpu",
                                       "threads": share.threads, "thresholds": thresholds, "save_maps": save_maps},
        compute=ray.data.ActorPoolStrategy(size=share.workers), batch_size=batch_size, batch_format="numpy",
        **share.remote_args())
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["index"])):
            yield {key: batch[key][i] for key in batch}


def ray_predict(model: str | os.PathLike, inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                num_workers: int | None = None, address: str | None = None, device: str = "auto",
                thresholds: dict[str, float] | None = None, save_maps: bool = False, skip_unreadable: bool = False,
                recursive: bool = False, num_cpus: int | None = None):
    """Score ``inputs`` with a saved detector on a Ray cluster and write OUT as the local engine does
    (:func:`~vandal.report.write_outputs`), plus ``predictions.parquet``. Returns the
    :class:`~vandal.report.RunReport`. ``inputs``: image paths, or URIs (listed here)."""
    from ..atomic import atomic_write_bytes
    from ..data.pixels import UnreadableImageError
    from ..outputs import unique_stems
    from ..report import finish_run, prediction_row

    out = Path(out)
    paths = [p for item in inputs for p in (list_uri(str(item), recursive) if is_uri(str(item)) else [str(item)])]
    if not paths:
        raise ValueError("no images to score: give image files, folders or URIs")
    stems = unique_stems(paths)
    files = model_files(model)
    rows, skipped, scores, table = [], [], {}, []
    with cluster(address, num_cpus) as ray:
        share = worker_share(ray.cluster_resources(), num_workers, device)
        out.mkdir(parents=True, exist_ok=True)
        for row in _results(ray, paths, stems, ray.put(files), share, device, thresholds or {}, save_maps):
            path = str(row["path"])
            if row["error"]:
                if not skip_unreadable:
                    raise UnreadableImageError(str(row["error"]))
                skipped.append([path, str(row["error"])])
                continue
            names = [str(name) for name in row["files"]]
            for name, blob in zip(names, row["blobs"]):
                atomic_write_bytes(out / name, bytes(blob))
            map_file = next((name for name in names if name.startswith("maps/")), "")
            score, label = float(row["pred_score"]), bool(row["pred_label"])
            rows.append(prediction_row(path, score, label, map_file))
            scores[path] = score
            table.append({"path": path, "pred_score": score, "pred_label": label,
                          "raw_score": float(row["raw_score"]), "map_file": map_file})
    write_parquet(out / "predictions.parquet", table)
    return finish_run(out, rows, skipped, scores)


def write_parquet(path: Path, table: list[dict[str, Any]]) -> None:
    """The predictions table as Parquet (full-precision scores), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..atomic import atomic_write_bytes

    columns = ("path", "pred_score", "pred_label", "raw_score", "map_file")
    types = (pa.string(), pa.float64(), pa.bool_(), pa.float64(), pa.string())
    arrow = pa.table({c: pa.array([r[c] for r in table], type=t) for c, t in zip(columns, types)})
    sink = pa.BufferOutputStream()
    pq.write_table(arrow, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


# ---------------------------------------------------------------------------------------- evaluation


class CellWorker:
    """An evaluation worker: keeps its backbone, and the current category's masks, between cells."""

    def __init__(self, config: Any, threads: int):
        from ..evaluation.run import CellDetectors

        set_threads(threads)
        self.config = config
        self.detectors = CellDetectors(config)
        self.masks: tuple[str | None, Any] = (None, None)

    def run(self, split: Any, shots: int, seed: int) -> dict[str, Any]:
        from ..evaluation.protocol import MaskCache
        from ..evaluation.run import run_cell

        if self.masks[0] != split.category:  # cells arrive category by category: one in memory at a time
            self.masks = (split.category, MaskCache(self.config.protocol))
        return run_cell(self.config, split, shots, seed, self.masks[1], self.detectors, progress=False)


def ray_cells(num_workers: int | None = None, address: str | None = None, num_cpus: int | None = None):
    """A :data:`~vandal.evaluation.run.CellRunner` that runs each (category, shots, seed) cell as a task on
    a pool of :class:`CellWorker` actors and yields each run as it finishes (the store saves it at once,
    so a killed run resumes as a local one does)."""

    def runner(config, splits, pending, progress=True) -> Iterator[dict[str, Any]]:
        if not pending:
            return
        with cluster(address, num_cpus) as ray:
            from ray.util import ActorPool

            share = worker_share(ray.cluster_resources(), num_workers, config.device)
            worker = ray.remote(CellWorker).options(**share.remote_args())
            actors = [worker.remote(config, share.threads) for _ in range(min(share.workers, len(pending)))]
            submit = lambda actor, cell: actor.run.remote(splits[cell[0]], cell[1], cell[2])  # noqa: E731
            yield from ActorPool(actors).map_unordered(submit, pending)

    return runner
