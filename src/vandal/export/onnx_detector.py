"""Running an exported detector with onnxruntime, behind the torch detector's predict surface.

:class:`OnnxDetector` reads everything from the file's metadata (no bundle, no backbone weights) and
runs the same code as :class:`~vandal.detector.Detector` around the graph: the resize policy's views
(:func:`~vandal.data.layout.image_views`) in front, and :func:`~vandal.prediction.decide` (views merged
to the image's size, image score on that map, calibration, decision levels) behind, on the graph's
``raw_map``. So ``vandal predict model.onnx ...`` writes what ``vandal predict MODEL_DIR ...`` writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbones.base import Preprocessing
from ..config import ConfigError, DetectorConfig, from_dict, stage_of
from ..data.images import DEFAULT_MAX_PIXELS, ImageInput, UnreadableImageError, as_image_list, decode_ahead, describe
from ..data.layout import View, image_views
from ..prediction import Prediction, decide, predictions_of
from ..scoring.distribution import decision_of, shift_of_terms
from ..scoring.fusion import ScoredImage
from ..scoring.levels import Calibration
from .runtime import DECISION_KEY, DamagedModelError, read_metadata, session

RUNTIME = ("device", "batch_size", "progress", "max_pixels")


class OnnxDetector:
    """An exported detector (global memory bank) run by onnxruntime; predicts as :class:`~vandal.detector.Detector`.

    device: cpu, cuda (onnxruntime-gpu) or auto; batch_size: views per graph run; threads: onnxruntime's
    intra-op threads (None: its default, all cores); max_pixels: larger inputs are refused as unreadable.
    """

    transductive = False
    fitted = True

    def __init__(self, path: str | os.PathLike, device: str = "auto", progress: bool = True, batch_size: int = 8,
                 threads: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = str(path)
        self.device, self.progress, self.batch_size, self.threads = device, progress, batch_size, threads
        self.max_pixels = max_pixels
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        self.session_ = session(self.path, device, threads)
        self.metadata_ = read_metadata(self.path, self.session_.get_modelmeta().custom_metadata_map)
        try:
            self.config: DetectorConfig = from_dict(self.metadata_["config"])
            self.calibration_ = Calibration.from_dict(self.metadata_["calibration"])
        except (ConfigError, TypeError, ValueError, AttributeError) as error:
            raise DamagedModelError(f"{self.path}: damaged metadata ({error}); export the model again") from error
        self.image_size = int(self.metadata_["image_size"])
        if self.config.backbone.image_size not in (None, self.image_size):
            raise DamagedModelError(f"{self.path}: damaged metadata: 'image_size' {self.image_size} differs from the "
                                    f"config's {self.config.backbone.image_size}; export the model again")
        self.preprocessing = Preprocessing(tuple(self.metadata_["mean"]), tuple(self.metadata_["std"]),
                                           self.metadata_["resample"])
        self.n_references_ = int(self.metadata_["n_references"])

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", progress: bool = True, batch_size: int = 8,
             threads: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> OnnxDetector:
        return cls(path, device=device, progress=progress, batch_size=batch_size, threads=threads,
                   max_pixels=max_pixels)

    @property
    def source_names(self) -> list[str]:
        """The exported detector's score sources (files from before the list: those its config wants)."""
        if "sources" in self.metadata_:
            return list(self.metadata_["sources"])
        from ..sources import SOURCES

        wanted = [name for name, source in SOURCES.items() if source.wanted(self.config, self.n_references_ > 0)]
        return [name for name in wanted if name != self._decision_source or self.metadata_.get(DECISION_KEY)]

    @property
    def _decision_source(self) -> str:
        # Format version 1 files before "source" name their decision's source by the key itself.
        return (self.metadata_.get(DECISION_KEY) or {}).get("source", DECISION_KEY)

    def set_params(self, **params: Any) -> OnnxDetector:
        """Runtime options and decision levels (``image_threshold``, ``pixel_threshold``); anything else is
        fixed in the graph."""
        for key in RUNTIME:
            if key in params:
                setattr(self, key, params.pop(key))
        fixed = [key for key in params if stage_of(key) != "predict"]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} are fixed in the exported graph ({self.path}): refit and export "
                              "again to change them; only image_threshold and pixel_threshold apply to it")
        self.config = self.config.replace(**params)
        return self

    # ------------------------------------------------------------------ predict
    def views(self, image: np.ndarray) -> tuple[list[View], torch.Tensor]:
        """``[H, W, 3]`` uint8 -> (views, ``[V, 3, S, S]`` normalised inputs) under the resize policy."""
        return image_views(image, self.image_size, self.preprocessing, self.config.views.resize)

    def raw_maps(self, inputs: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Normalised views ``[V, 3, S, S]`` -> the graph's smoothed raw maps ``[V, S, S]`` and the
        distribution terms ``[V, C]`` (two), ``batch_size`` views per run."""
        pixels = inputs.numpy()
        names = [o.name for o in self.session_.get_outputs()]
        wanted = ["raw_map"] + [n for n in ("dist_delta", "dist_pdelta") if n in names]
        runs = [self.session_.run(wanted, {"pixels": pixels[start: start + self.batch_size]})
                for start in range(0, len(pixels), self.batch_size)]
        maps = torch.from_numpy(np.concatenate([r[0] for r in runs]))
        if len(wanted) == 1:  # exported before the distribution source: no terms
            return maps, np.zeros((len(maps), 1), np.float32), np.zeros((len(maps), 1), np.float32)
        return maps, np.concatenate([r[1] for r in runs]), np.concatenate([r[2] for r in runs])

    def _decisions(self, delta: np.ndarray, pdelta: np.ndarray) -> dict[str, float]:
        """One image's views' decision terms -> its decision (as the torch source gives it)."""
        terms = self.metadata_.get(DECISION_KEY)
        if not terms:
            return {}
        shift = shift_of_terms(delta.astype(np.float64).mean(axis=0), pdelta.astype(np.float64).mean(axis=0))
        return {self._decision_source: float(decision_of(shift, terms["level"], terms["margin"]))}

    def _decide(self, image: np.ndarray, views: list[View], outputs: tuple, name: str | None,
                grid: bool = False) -> Prediction:
        raw, delta, pdelta = outputs
        terms = self.metadata_.get(DECISION_KEY) or {}
        scored = ScoredImage(views, image.shape[0], image.shape[1], raw, [], None, True,
                             self._decisions(delta, pdelta), bool(terms.get("exclusive")))
        return decide(scored, self.calibration_, self.config.post, name, grid)

    def predict_image(self, image: np.ndarray, name: str | None = None, grid: bool = False) -> Prediction:
        """One decoded ``[H, W, 3]`` uint8 image -> its :class:`~vandal.prediction.Prediction` (``grid``: on
        the input grid, ``resize="squash"`` only), as the torch detector gives it."""
        views, inputs = self.views(image)
        return self._decide(image, views, self.raw_maps(inputs), name, grid)

    def predict_stream(self, images: Iterable[ImageInput], total: int | None = None
                       ) -> Iterator[tuple[ImageInput, np.ndarray | UnreadableImageError, Prediction | None]]:
        """``(input, decoded image or its error, prediction or None)`` in input order; decoding and views run
        ahead in a thread, and ``batch_size`` images' views share each graph run."""
        if total is None and hasattr(images, "__len__"):
            total = len(images)  # type: ignore[arg-type]
        decoded = tqdm(enumerate(decode_ahead(images, self.max_pixels, ahead=self.batch_size, prepare=self.views)),
                       desc="predict (onnx)", unit="img", total=total, disable=not self.progress)
        chunk: list = []
        for index, (entry, item) in decoded:
            chunk.append((entry, index, item))
            if len(chunk) == self.batch_size:
                yield from self._run_chunk(chunk)
                chunk = []
        yield from self._run_chunk(chunk)

    def _run_chunk(self, chunk: list) -> Iterator[tuple]:
        ready = [item for _, _, item in chunk if not isinstance(item, UnreadableImageError)]
        outputs = self.raw_maps(torch.cat([inputs for _, (_, inputs) in ready])) if ready else None
        offset = 0
        for entry, index, item in chunk:
            if isinstance(item, UnreadableImageError):
                yield entry, item, None
                continue
            image, (views, _) = item
            part = tuple(o[offset: offset + len(views)] for o in outputs)
            offset += len(views)
            yield entry, image, self._decide(image, views, part, describe(entry, index))

    def iter_predict(self, images: Iterable[ImageInput], skip_unreadable: bool = False,
                     total: int | None = None) -> Iterator[Prediction | UnreadableImageError]:
        """Predict lazily; with ``skip_unreadable`` an unreadable input yields its error instead of stopping."""
        yield from predictions_of(self.predict_stream(images, total), skip_unreadable)

    def predict(self, images: Iterable[ImageInput] | ImageInput) -> list[Prediction]:
        """Images (paths, PIL images or arrays) -> one :class:`~vandal.prediction.Prediction` each."""
        return [p for p in self.iter_predict(as_image_list(images)) if isinstance(p, Prediction)]
