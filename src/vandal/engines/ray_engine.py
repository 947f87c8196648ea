"""Scoring and evaluating on a Ray cluster (the ``ray`` extra): more images than one machine scores.

``vandal predict MODEL PATHS --out OUT --engine ray``: the inputs (local files and folders, or URIs that
pyarrow's filesystems read: ``s3://``, ``gs://``, ``file://``...) become a Ray Dataset of (index, path,
output stem); :class:`Scorer`, a callable class run by ``map_batches`` on an actor pool, loads the
model once per worker (a bundle folder or an ``.onnx`` file, shipped through the object store so
the model needs no shared disk), reads and scores each image with the detector's own ``predict_image``
and writes its overlay, mask and map into OUT with the local engine's :func:`~vandal.outputs.run.write_files`.
The driver claims OUT as the local engine does (:mod:`vandal.outputs.folder`) and writes ``predictions.csv``
(same rows, same names) and ``predictions.parquet`` (the same table with full-precision scores).

``vandal evaluate --engine ray``: each (category, shots, seed) cell is a task on an actor that keeps
its backbone loaded; the driver stores every finished cell at once (same ``results.json``, same resume).

Without an address a local cluster starts on this machine; with one, the run joins that cluster (then
local inputs, dataset roots and OUT must be paths that every worker sees: a shared filesystem). Each worker gets an
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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.images import DEFAULT_MAX_PIXELS
from ..prediction import decision_levels

if TYPE_CHECKING:
    from ..runner import Predictor

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


def read_image(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A local path as the local engine reads it, or a URI's bytes through pyarrow, decoded the same way."""
    from ..data.images import decode_bytes, load_image

    if not is_uri(path):
        return load_image(path, max_pixels)
    from pyarrow import fs as pafs

    from ..data.pixels import UnreadableImageError

    try:
        filesystem, name = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_file(name) as handle:
            data = handle.read()
    except (OSError, ValueError) as error:
        raise UnreadableImageError(f"{path}: cannot read ({error})") from error
    return decode_bytes(data, path, max_pixels)


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


def _refuse_transductive(model: str | os.PathLike) -> None:
    """Before any cluster starts: workers score one image at a time, which a transductive detector (mutual
    batch, musc) cannot. ONNX graphs are never transductive (export refuses them)."""
    from ..bundle import read_document
    from ..config import ConfigError, from_dict

    if not Path(model).is_dir():
        return
    saved = read_document(model).get("config")
    try:
        config = from_dict(saved) if isinstance(saved, dict) else None
    except ConfigError:
        config = None
    if config is None:
        return  # a damaged bundle: loading it in the workers says so, naming the field
    if config.mutual.transductive:
        raise ValueError(f"{model}: this detector is transductive (mutual.mode = batch): it scores the images against "
                         "each other, which Ray workers scoring one image each cannot; use --engine local "
                         "(vandal predict MODEL_DIR IMAGES... --out DIR)")


def load_model(files: dict[str, bytes], runtime: dict[str, Any], threads: int, folder: str) -> Predictor:
    """Write ``files`` (:func:`model_files`) to ``folder`` and load them with :func:`vandal.load`
    (``runtime``: device, max_pixels, allow_download): an ``.onnx`` file runs ``threads`` threads."""
    from ..loading import load

    for name, data in files.items():
        Path(folder, name).write_bytes(data)
    onnx = [name for name in files if name.endswith(".onnx")]
    if onnx:
        return load(Path(folder, onnx[0]), device=runtime["device"], progress=False, threads=threads,
                    max_pixels=runtime["max_pixels"])
    return load(folder, progress=False, **runtime)


class Scorer:
    """Ray Data's callable class: loads the model once per worker, then scores batches of paths and writes
    each image's overlay, mask and map into OUT with the local engine's :func:`~vandal.outputs.run.write_files`.

    Each row out: index, path, pred_score, raw_score, pred_label, error (unreadable: the reason).
    """

    def __init__(self, model_ref: list, out: str, runtime: dict[str, Any], threads: int,
                 thresholds: dict[str, float], save_maps: bool):
        import ray
        from PIL import Image

        set_threads(threads)
        if runtime.get("max_pixels") is not None:  # as the command line does: vandal's limit replaces Pillow's
            Image.MAX_IMAGE_PIXELS = runtime["max_pixels"]
        self.folder = tempfile.mkdtemp(prefix="vandal-model-")
        self.detector = load_model(ray.get(model_ref[0]), runtime, threads, self.folder)
        self.image_threshold, self.pixel_threshold = thresholds.get("image_threshold"), thresholds.get("pixel_threshold")
        self.level = decision_levels(self.detector.config.post, self.image_threshold, self.pixel_threshold).pixel
        self.out, self.save_maps = Path(out), save_maps

    def score(self, path: str, stem: str, writer: Any) -> dict[str, Any]:
        from functools import partial

        from ..data.pixels import UnreadableImageError
        from ..outputs.run import write_files

        try:
            image = read_image(path, self.detector.max_pixels)
        except UnreadableImageError as error:
            return {"pred_score": math.nan, "raw_score": math.nan, "pred_label": False, "error": str(error)}
        prediction = self.detector.predict_image(image, path, image_threshold=self.image_threshold,
                                                 pixel_threshold=self.pixel_threshold)
        writer.submit(partial(write_files, self.out, stem, image, prediction, self.level, self.save_maps),
                      image.size // 3)
        return {"pred_score": prediction.pred_score, "raw_score": float(prediction.raw_score),
                "pred_label": bool(prediction.pred_label), "error": ""}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from ..outputs.files import BackgroundWriter

        with BackgroundWriter() as writer:  # PNG encoding overlaps the next image; all written before returning
            rows = [self.score(str(path), str(stem), writer) for path, stem in zip(batch["path"], batch["stem"])]
        out: dict[str, list] = {"index": [int(i) for i in batch["index"]], "path": [str(p) for p in batch["path"]]}
        for key in ("pred_score", "raw_score", "pred_label", "error"):
            out[key] = [row[key] for row in rows]
        return out


def _results(ray, paths: list[str], stems: list[str], files_ref: Any, out: Path, share: Share,
             runtime: dict[str, Any], thresholds: dict[str, float], save_maps: bool) -> Iterator[dict[str, Any]]:
    """Score every path on the actor pool; rows come back in input order."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in input order, as the local engine
    batch_size = max(1, min(BATCH_SIZE, math.ceil(len(paths) / share.workers)))
    items = [{"index": i, "path": p, "stem": s} for i, (p, s) in enumerate(zip(paths, stems))]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    runtime = dict(runtime, device="cuda" if share.gpus else "cpu")
    # The model travels as a reference inside a list: small arguments, fetched once per worker.
    scored = dataset.map_batches(
        Scorer, fn_constructor_kwargs={"model_ref": [files_ref], "out": str(out), "runtime": runtime,
                                       "threads": share.threads, "thresholds": thresholds, "save_maps": save_maps},
        compute=ray.data.ActorPoolStrategy(size=share.workers), batch_size=batch_size, batch_format="numpy",
        **share.remote_args())
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["index"])):
            yield {key: batch[key][i] for key in batch}


def ray_predict(model: str | os.PathLike, inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                num_workers: int | None = None, address: str | None = None, device: str = "auto",
                thresholds: dict[str, float] | None = None, save_maps: bool = False, skip_unreadable: bool = False,
                overwrite: bool = False, recursive: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                allow_download: bool = False, num_cpus: int | None = None):
    """Score ``inputs`` with a saved detector on a Ray cluster and write OUT as the local engine does
    (:func:`~vandal.outputs.run.write_outputs`: the folder claimed, the same files and rows), plus
    ``predictions.parquet``. Returns the :class:`~vandal.outputs.run.RunReport`. ``inputs``: image paths, or
    URIs (listed here). Workers write the image files into OUT: on a cluster of several machines, OUT
    must be a folder they all see."""
    from ..data.pixels import UnreadableImageError
    from ..outputs.files import safe_cell, unique_stems
    from ..outputs.folder import claim
    from ..outputs.run import planned_files, prediction_row, run_report, write_tables

    decision_levels(None, **(thresholds or {}))  # refuse bad or unknown levels here, not in every worker
    paths = [p for item in inputs for p in (list_uri(str(item), recursive) if is_uri(str(item)) else [str(item)])]
    if not paths:
        raise ValueError("no images to score: give image files, folders or URIs")
    stems = unique_stems(paths)
    files = model_files(model)
    _refuse_transductive(model)
    runtime = {"max_pixels": max_pixels, "allow_download": allow_download}
    rows, skipped, scores, table = [], [], {}, []
    with cluster(address, num_cpus) as ray, claim(out, planned_files(stems, save_maps), overwrite) as folder:
        share = worker_share(ray.cluster_resources(), num_workers, device)
        results = _results(ray, paths, stems, ray.put(files), folder.resolve(), share, runtime, thresholds or {},
                           save_maps)
        for row, stem in zip(results, stems):
            path = str(row["path"])
            if row["error"]:
                if not skip_unreadable:
                    raise UnreadableImageError(str(row["error"]))
                skipped.append([safe_cell(path), str(row["error"])])
                continue
            score, label = float(row["pred_score"]), bool(row["pred_label"])
            rows.append(prediction_row(path, score, label, stem, save_maps))
            scores[path] = score
            table.append({**rows[-1], "pred_score": score, "pred_label": label, "raw_score": float(row["raw_score"])})
        write_tables(folder, rows, skipped)
        write_parquet(folder / "predictions.parquet", table)
    return run_report(folder, rows, skipped, scores)


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
