"""What the detector returns for one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    """One image's result, at the image's original size.

    pred_score: calibrated image score; 0.5 is the decision threshold learned from the references.
    anomaly_map: ``[H, W]`` float32, calibrated the same way per pixel.
    pred_label: True when the image is judged anomalous.
    pred_mask: ``[H, W]`` bool, the pixels judged anomalous.
    raw_score: the uncalibrated image score (distance / probability units).
    path: the input's name (a path, or a placeholder for in-memory images).
    text_score: the text-probability part of ``raw_score`` (text backbones with a class name), else None.
    """

    pred_score: float
    anomaly_map: np.ndarray
    pred_label: bool
    pred_mask: np.ndarray
    raw_score: float
    path: str | None = None
    text_score: float | None = None
