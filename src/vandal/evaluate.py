"""Benchmark evaluation (METHOD section 6): every (category, shots, seed) cell -> the papers' metrics.

A cell fits a :class:`~vandal.detector.Detector` on ``k`` references drawn by
:func:`~vandal.data.sampling.sample_shots` (zero-shot: none, text prompts with the category name),
predicts the category's test set, and scores image and pixel metrics. Results go to
``DIR/results.json`` after every cell (atomically), so a killed run resumes where it stopped;
tables (Markdown, CSV) are written by :mod:`vandal.result_tables`.

Resolution protocols: ``"518"`` resizes maps and masks to 518x518 (mask bilinear, then > 0.5) as
the papers do; ``"native"`` scores at each image's original size (the MVTec AD protocol).
Image scores are the detector's own (calibrated on the references only); ``transductive=True``
replaces them, for few-shot cells, by the reference code's test-set min-max normalised form.

``results.json``: ``{"config": {...}, "runs": [{"category", "shots", "seed", "files", "metrics",
"n_test", "n_anomalous", "seconds", "finished_at"}], "mean": {"<shots>": {"metrics", "std",
"categories", "seeds"}}}``; metrics are fractions in [0, 1] keyed as :data:`METRIC_KEYS`
(``pixel_aupro_legacy`` is null when skipped or undefined). Zero-shot cells have seed 0.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .backbones import DEFAULT_BACKBONE
from .data.datasets import CategorySplit, Sample, load_dataset, load_mask
from .prediction import Prediction

PROTOCOLS = ("518", "native")
PAPER_SIZE = 518
METRIC_KEYS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max",
               "pixel_aupro", "pixel_aupro_legacy", "vand")
# Which cells a run asks for, and descriptive fields: everything else in the config changes results
# and must match on resume.
CELL_KEYS = ("categories", "shots", "seeds")
UNCOMPARED_KEYS = CELL_KEYS + ("device", "image_score", "resolution", "version")
FLOAT16_MAX = float(np.finfo(np.float16).max)
RESULTS_FILE = "results.json"


class ConfigMismatchError(ValueError):
    """``results.json`` in the output folder was made with other settings."""


@dataclass
class EvalConfig:
    """What to evaluate. ``detector`` holds extra :class:`Detector` keyword arguments
    (``resize``, ``neighbourhood``, ``augment``, ``taps``...)."""

    dataset: str
    root: str
    categories: list[str] | None = None
    shots: list[int] = field(default_factory=lambda: [0, 1, 2, 4])
    seeds: int = 5
    backbone: str = DEFAULT_BACKBONE
    image_size: int | None = None
    protocol: str = "518"
    class_name_humanize: bool = False
    adapters: str | None = None
    transductive: bool = False
    legacy_pro: bool = True
    detector: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not self.shots or any(k < 0 for k in self.shots):
            raise ValueError(f"shots must be non-negative integers, got {self.shots}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    def detector_params(self) -> dict[str, Any]:
        """Every :class:`Detector` parameter that shapes a cell's predictions (defaults filled in)."""
        params = _detector(self, None).get_params()
        for key in ("backbone", "image_size", "adapters", "class_name", "batch_size", "image_threshold",
                    "pixel_threshold"):
            params.pop(key, None)  # recorded at the top level, set per cell, or no effect on the metrics
        return params

    def to_dict(self) -> dict[str, Any]:
        """The config as ``results.json`` records it (JSON types, so a reloaded one compares equal)."""
        from . import __version__

        data = asdict(self)
        data["root"] = str(Path(self.root).expanduser().resolve())
        data["adapters"] = str(Path(self.adapters).expanduser().resolve()) if self.adapters else None
        data["detector"] = self.detector_params()
        data["image_score"] = ("TRANSDUCTIVE: 0.5 * (text probability + test-set min-max normalised map maximum), "
                               "few-shot cells; zero-shot: pred_score" if self.transductive
                               else "detector pred_score (calibrated on the references only)")
        data["resolution"] = f"{PAPER_SIZE}x{PAPER_SIZE}" if self.protocol == "518" else "original image size"
        data["version"] = __version__
        return json.loads(json.dumps(data))


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match for cells to be comparable (not which cells)."""
    return {k: v for k, v in config.items() if k not in UNCOMPARED_KEYS}


def cell_seeds(shots: int, seeds: int) -> list[int]:
    """Zero-shot has nothing to draw: one run, recorded as seed 0."""
    return [0] if shots == 0 else list(range(seeds))


# --------------------------------------------------------------------------- accumulation


def to_protocol(anomaly_map: np.ndarray, protocol: str) -> np.ndarray:
    """``[H, W]`` float map -> float16 at the protocol's resolution (518: bilinear, as the papers)."""
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if protocol == "518" and amap.shape != (PAPER_SIZE, PAPER_SIZE):
        amap = np.asarray(Image.fromarray(amap, mode="F").resize((PAPER_SIZE, PAPER_SIZE), Image.Resampling.BILINEAR))
    # float16 halves memory; clipping keeps a degenerate calibration from turning into inf.
    return np.clip(amap, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


class MaskCache:
    """Ground-truth masks of one category at the protocol resolution, read once for all cells."""

    def __init__(self, protocol: str):
        self.protocol = protocol
        self._masks: dict[Path, np.ndarray] = {}
        self._zeros: dict[tuple[int, int], np.ndarray] = {}

    def get(self, sample: Sample, shape: tuple[int, int]) -> np.ndarray:
        """Bool mask of ``sample`` shaped like its evaluated map (normal images share one zero array)."""
        if sample.mask_path is None:
            if shape not in self._zeros:
                zeros = np.zeros(shape, dtype=bool)
                zeros.flags.writeable = False
                self._zeros[shape] = zeros
            return self._zeros[shape]
        mask = self._masks.get(sample.mask_path)
        if mask is None or mask.shape != shape:
            # 518: as the papers (bilinear, > 0.5); native: the image's size (masks almost always match).
            mask = load_mask(sample.mask_path, shape)
            self._masks[sample.mask_path] = mask
        return mask


class CategoryAccumulator:
    """Predictions of one cell, kept small: float16 maps at the protocol size and a few floats."""

    def __init__(self, protocol: str, masks: MaskCache):
        self.protocol = protocol
        self.mask_cache = masks
        self.labels: list[int] = []
        self.scores: list[float] = []
        self.text_scores: list[float | None] = []
        self.maps: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def add(self, sample: Sample, prediction: Prediction) -> None:
        amap = to_protocol(prediction.anomaly_map, self.protocol)
        self.labels.append(int(sample.label))
        self.scores.append(float(prediction.pred_score))
        self.text_scores.append(prediction.text_score)
        self.maps.append(amap)
        self.masks.append(self.mask_cache.get(sample, amap.shape))

    def image_scores(self, transductive: bool) -> np.ndarray:
        if not transductive:
            return np.asarray(self.scores, dtype=np.float64)
        maxima = np.array([float(m.max()) for m in self.maps])
        text = np.array([0.0 if t is None else t for t in self.text_scores])
        return transductive_scores(text, maxima)

    def metrics(self, transductive: bool = False, legacy_pro: bool = True) -> dict[str, float | None]:
        """The cell's metrics as fractions in [0, 1] (``pixel_aupro_legacy`` None when skipped or undefined)."""
        from .metrics import aupro_legacy, image_metrics, pixel_metrics, vand_score

        image = image_metrics(np.asarray(self.labels), self.image_scores(transductive))
        pixel = pixel_metrics(self.masks, self.maps)
        legacy = None
        if legacy_pro:
            # The legacy loop compares every map at 200 thresholds: float32 is 2.5x faster than float16.
            value = aupro_legacy(self.masks, [m.astype(np.float32) for m in self.maps])
            legacy = None if math.isnan(value) else value
        return {
            "image_auroc": image["auroc"], "image_ap": image["ap"], "image_f1max": image["f1max"],
            "pixel_auroc": pixel["auroc"], "pixel_ap": pixel["ap"], "pixel_f1max": pixel["f1max"],
            "pixel_aupro": pixel["aupro"], "pixel_aupro_legacy": legacy,
            "vand": vand_score(image["f1max"], pixel["f1max"]),
        }


def transductive_scores(text: np.ndarray, map_maxima: np.ndarray) -> np.ndarray:
    """TRANSDUCTIVE (reference code): ``0.5 * (text + minmax(map maxima over the test set))``.

    A score depends on the other test images; only for reproducing published numbers.
    """
    maxima = np.asarray(map_maxima, dtype=np.float64)
    spread = maxima.max() - maxima.min()
    normalised = (maxima - maxima.min()) / spread if spread > 0 else np.zeros_like(maxima)
    return 0.5 * (np.asarray(text, dtype=np.float64) + normalised)


# --------------------------------------------------------------------------- results file


class ResultStore:
    """``results.json``: the config and one entry per finished cell, rewritten atomically."""

    def __init__(self, out_dir: Path, config: dict[str, Any], restart: bool = False):
        self.path = Path(out_dir) / RESULTS_FILE
        self.config = config
        self.runs: dict[tuple[str, int, int], dict] = {}
        self.notes: list[str] = []
        if self.path.is_file() and not restart:
            self._resume()

    def _resume(self) -> None:
        try:
            old = json.loads(self.path.read_text())
            old_config = old["config"]
            runs = old["runs"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ConfigMismatchError(
                f"{self.path} exists but is not a vandal results file ({error}); use --restart to overwrite it "
                "or choose another --out") from error
        new, before = settings(self.config), settings(old_config)
        diff = sorted(k for k in new.keys() | before.keys() if new.get(k) != before.get(k))
        if diff:
            lines = ", ".join(f"{k}: {before.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise ConfigMismatchError(
                f"{self.path} was written with other settings ({lines}); its cells are not comparable. "
                "Use --restart to discard them, or another --out folder.")
        for run in runs:
            self.runs[(run["category"], run["shots"], run["seed"])] = run

    def done(self, category: str, shots: int, seed: int) -> bool:
        return (category, shots, seed) in self.runs

    def add(self, run: dict) -> None:
        self.runs[(run["category"], run["shots"], run["seed"])] = run

    def document(self, mean: dict | None = None) -> dict[str, Any]:
        runs = [self.runs[k] for k in sorted(self.runs)]
        doc: dict[str, Any] = {"config": self.config, "runs": runs, "mean": mean or {}}
        if self.notes:
            doc["notes"] = self.notes
        return doc

    def save(self, mean: dict | None = None) -> None:
        write_atomic(self.path, json.dumps(self.document(mean), indent=1, allow_nan=False))


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- running


def _detector(config: EvalConfig, class_name: str | None):
    from .detector import Detector

    return Detector(config.backbone, config.image_size, class_name=class_name, adapters=config.adapters,
                    device=config.device, progress=False, **config.detector)


def _zero_shot_detector(config: EvalConfig, category: str):
    """A fitted zero-shot detector, or None when the backbone has no text encoder."""
    name = category.replace("_", " ") if config.class_name_humanize else category
    detector = _detector(config, name)
    try:
        return detector.fit()
    except ValueError:
        backbone = getattr(detector, "backbone_", None)
        if backbone is not None and not backbone.has_text:
            return None
        raise


def run_cell(config: EvalConfig, split: CategorySplit, shots: int, seed: int, masks: MaskCache,
             detector=None, progress: bool = True) -> dict[str, Any]:
    """Fit (unless a fitted ``detector`` is given), predict the test set, score: one ``runs`` entry."""
    from .data.images import load_image
    from .data.sampling import sample_shots

    start = time.perf_counter()
    references = sample_shots(split.train, shots, seed) if shots else []
    if detector is None:
        detector = _detector(config, None).fit([s.path for s in references])
    acc = CategoryAccumulator(config.protocol, masks)
    desc = f"{split.category} k={shots} seed={seed}"
    for sample in tqdm(split.test, desc=desc, unit="img", leave=False, disable=not progress):
        acc.add(sample, detector.predict_image(load_image(sample.path), str(sample.path)))
    metrics = acc.metrics(config.transductive and shots > 0, config.legacy_pro)
    return {
        "category": split.category, "shots": shots, "seed": seed,
        "files": [str(s.path) for s in references],
        "metrics": metrics,
        "n_test": len(split.test), "n_anomalous": int(sum(acc.labels)),
        "seconds": round(time.perf_counter() - start, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _check_shots(splits: dict[str, CategorySplit], shots: list[int]) -> None:
    k = max(shots)
    short = {c: len(s.train) for c, s in splits.items() if len(s.train) < k}
    if short:
        raise ValueError(f"--shots asks for up to {k} references, but some categories have fewer normal "
                         f"training images: {short}; lower the shot counts or drop those categories")


def evaluate(config: EvalConfig, out_dir: str | os.PathLike, restart: bool = False,
             echo: Callable[[str], None] = tqdm.write, progress: bool = True) -> dict[str, Any]:
    """Run every missing cell, writing ``results.json`` after each, then the tables.

    Returns the results document (the contents of ``results.json``).
    """
    from .result_tables import summarise, write_tables

    config.check()
    splits = load_dataset(config.dataset, config.root, config.categories)
    shots = list(dict.fromkeys(config.shots))
    _check_shots(splits, shots)
    out_dir = Path(out_dir)
    stored = config.to_dict()
    stored["categories"] = list(splits)
    store = ResultStore(out_dir, stored, restart=restart)
    out_dir.mkdir(parents=True, exist_ok=True)

    wanted = [(c, k, s) for c in splits for k in shots for s in cell_seeds(k, config.seeds)]
    pending = [cell for cell in wanted if not store.done(*cell)]
    if len(pending) < len(wanted):
        echo(f"resuming: {len(wanted) - len(pending)} of {len(wanted)} cells already in {store.path}")

    def save() -> dict[str, Any]:
        # Means and tables are cheap: rewrite them with every cell, so a killed run leaves them current.
        summary = summarise(list(store.runs.values()), list(splits), shots, config.seeds)
        mean = {str(k): v["mean"] for k, v in summary.items()}
        store.save(mean)
        write_tables(summary, out_dir, store.config)
        return store.document(mean)

    zero_shot_ok: bool | None = None
    bar = tqdm(total=len(pending), desc="cells", unit="cell", disable=not progress)
    for category in splits:
        cells = [(k, s) for c, k, s in pending if c == category]
        if not cells:
            continue
        masks = MaskCache(config.protocol)  # one category in memory at a time
        for k, seed in cells:
            detector = None
            if k == 0:
                if zero_shot_ok is False:
                    bar.update()
                    continue
                detector = _zero_shot_detector(config, category)
                zero_shot_ok = detector is not None
                if detector is None:
                    note = (f"shots 0 skipped: backbone {config.backbone!r} has no text encoder; zero-shot needs "
                            "a CLIP backbone (e.g. --backbone openai/clip-vit-large-patch14-336)")
                    echo(note)
                    store.notes.append(note)
                    bar.update()
                    continue
            store.add(run_cell(config, splits[category], k, seed, masks, detector, progress))
            save()
            bar.update()
    bar.close()
    return save()
