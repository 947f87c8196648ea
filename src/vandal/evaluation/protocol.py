"""Accumulating one cell's predictions at the protocol's resolution, and the image-score forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.datasets import Sample, load_mask
from ..prediction import Prediction
from .config import PAPER_SIZE

FLOAT16_MAX = float(np.finfo(np.float16).max)


def to_protocol(anomaly_map: np.ndarray, protocol: str) -> np.ndarray:
    """``[H, W]`` float map at the protocol's resolution (518: bilinear, as the papers; native and
    grid: as predicted): float16, except grid's float32, whose legacy AU-PRO must equal the
    reference's float32 computation (docs/method.md §8)."""
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if protocol == "518" and amap.shape != (PAPER_SIZE, PAPER_SIZE):
        amap = np.asarray(Image.fromarray(amap, mode="F").resize((PAPER_SIZE, PAPER_SIZE), Image.Resampling.BILINEAR))
    if protocol == "grid":
        return amap
    # float16 halves memory; clipping keeps a degenerate calibration from turning into inf.
    return np.clip(amap, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


def reference_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool ``[h, w]`` -> ``[H, W]`` as the APRIL-GAN reference resizes masks: a 0/255 uint8 image,
    bilinear (rounded to uint8 by the resize), then ``> 127``."""
    if mask.shape == shape:
        return mask.astype(bool)
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(image) > 127


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
            if self.protocol == "grid":
                mask = reference_mask(load_mask(sample.mask_path), shape)
            else:  # 518: as the papers (bilinear, > 0.5); native: the image's size (masks almost always match)
                mask = load_mask(sample.mask_path, shape)
            self._masks[sample.mask_path] = mask
        return mask


def transductive_scores(text: np.ndarray, map_maxima: np.ndarray) -> np.ndarray:
    """TRANSDUCTIVE (reference code): ``0.5 * (text + minmax(map maxima over the test set))``.

    A score depends on the other test images; only for reproducing published numbers.
    """
    maxima = np.asarray(map_maxima, dtype=np.float64)
    spread = maxima.max() - maxima.min()
    normalised = (maxima - maxima.min()) / spread if spread > 0 else np.zeros_like(maxima)
    return 0.5 * (np.asarray(text, dtype=np.float64) + normalised)


class CategoryAccumulator:
    """Predictions of one cell, kept small: maps at the protocol size (see :func:`to_protocol`) and a
    few floats."""

    def __init__(self, protocol: str, masks: MaskCache):
        self.protocol = protocol
        self.mask_cache = masks
        self.labels: list[int] = []
        self.scores: list[float] = []
        self.flags: list[bool] = []
        self.text_scores: list[float | None] = []
        self.maps: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def add(self, sample: Sample, prediction: Prediction) -> None:
        amap = to_protocol(prediction.anomaly_map, self.protocol)
        self.labels.append(int(sample.label))
        self.scores.append(float(prediction.pred_score))
        self.flags.append(bool(prediction.pred_label))
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
        from ..metrics import aupro_legacy, image_metrics, pixel_metrics, vand_score

        image = image_metrics(np.asarray(self.labels), self.image_scores(transductive))
        pixel = pixel_metrics(self.masks, self.maps)
        legacy = None
        if legacy_pro:
            # The legacy loop compares every map at 200 thresholds: float32 is faster than float16.
            value = aupro_legacy(self.masks, [m.astype(np.float32, copy=False) for m in self.maps])
            legacy = None if math.isnan(value) else value
        return {
            "image_auroc": image["auroc"], "image_ap": image["ap"], "image_f1max": image["f1max"],
            "pixel_auroc": pixel["auroc"], "pixel_ap": pixel["ap"], "pixel_f1max": pixel["f1max"],
            "pixel_aupro": pixel["aupro"], "pixel_aupro_legacy": legacy,
            "vand": vand_score(image["f1max"], pixel["f1max"]),
        }

    def decisions(self) -> dict[str, float | None]:
        """The detector's own decisions (pred_label at its threshold): share of defects and of good
        images flagged, and the F1 of those decisions."""
        labels, flags = np.asarray(self.labels, bool), np.asarray(self.flags, bool)
        tp, fp = int((labels & flags).sum()), int((~labels & flags).sum())
        fn = int((labels & ~flags).sum())
        return {"flagged_defects": float(flags[labels].mean()) if labels.any() else None,
                "flagged_good": float(flags[~labels].mean()) if (~labels).any() else None,
                "f1_at_threshold": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None}
