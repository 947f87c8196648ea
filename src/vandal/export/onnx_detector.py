"""Running an exported detector with onnxruntime, behind the torch detector's predict surface.

:class:`OnnxDetector` reads everything from the file's metadata (no bundle, no backbone weights) and
runs the same code as :class:`~vandal.detector.Detector` around the graph: the resize policy's views
(:func:`~vandal.data.layout.image_views`) in front, and :func:`~vandal.prediction.decide` (views merged
to the image's size, image score on that map, calibration, decision levels) behind, on the graph's
``raw_map``. So ``vandal predict model.onnx ...`` writes what ``vandal predict MODEL_DIR ...`` writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..backbones.base import Preprocessing
from ..config import ConfigError, DetectorConfig, from_dict, stage_of
from ..data.images import DEFAULT_MAX_PIXELS
from ..data.layout import View, image_views
from ..data.lighting import check_target
from ..runner import Runner
from ..scoring.distribution import decision_of, shift_of_terms
from ..scoring.fusion import ScoredImage
from ..scoring.levels import Calibration
from .runtime import DECISION_KEY, DamagedModelError, read_metadata, session


class OnnxDetector(Runner):
    """An exported detector (global memory bank) run by onnxruntime; predicts as :class:`~vandal.detector.Detector`.

    device: cpu, cuda (onnxruntime-gpu) or auto; batch_size: views per graph run; threads: onnxruntime's
    intra-op threads (None: its default, all cores); max_pixels: larger inputs are refused as unreadable.
    """

    RUNTIME = ("device", "batch_size", "progress", "max_pixels")
    progress_label = "predict (onnx)"
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
        # The references' lighting target (files from before it: none)
        self.lighting = check_target(self.metadata_.get("lighting"), "lighting")

    @property
    def backbone_name(self) -> str:
        return self.metadata_["backbone"]

    @property
    def input_size(self) -> int:
        """The graph's input side in pixels."""
        return self.image_size

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

    def _set_fixed(self, params: dict[str, Any]) -> None:
        """Only the decision levels (``image_threshold``, ``pixel_threshold``): the rest is in the graph."""
        fixed = [key for key in params if stage_of(key) != "predict"]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} are fixed in the exported graph ({self.path}): refit and export "
                              "again to change them; only image_threshold and pixel_threshold apply to it")
        self.config = self.config.replace(**params)

    # ------------------------------------------------------------------ predict
    def views(self, image: np.ndarray) -> tuple[list[View], torch.Tensor]:
        """``[H, W, 3]`` uint8 -> (views, ``[V, 3, S, S]`` normalised inputs) under the resize policy."""
        return image_views(image, self.image_size, self.preprocessing, self.config.views.resize, self.lighting)

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

    def _prepare(self, image: np.ndarray) -> tuple[list[View], torch.Tensor]:
        return self.views(image)

    def _score(self, chunk: list[tuple[np.ndarray, str | None, Any]]) -> Iterator[ScoredImage]:
        """The chunk's views in graph runs of ``batch_size`` views -> each image's fused answers."""
        raw, delta, pdelta = self.raw_maps(torch.cat([inputs for _, _, (_, inputs) in chunk]))
        terms = self.metadata_.get(DECISION_KEY) or {}
        offset = 0
        for image, _, (views, _) in chunk:
            part = slice(offset, offset + len(views))
            offset += len(views)
            yield ScoredImage(views, image.shape[0], image.shape[1], raw[part], [], None, True,
                              self._decisions(delta[part], pdelta[part]), bool(terms.get("exclusive")))
