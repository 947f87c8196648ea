"""Scores calibrated on the references only, so one image's score never depends on another test image.

Raw scores (cosine distances, text probabilities) are mapped linearly so that the decision
threshold learned from the references lands on 0.5: ``calibrated = 0.5 * raw / threshold``.
The map is monotonic (rankings and AUROC are unchanged) and has no clipping (no ties at the top).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

DECISION_LEVEL = 0.5


@dataclass
class Calibration:
    """Raw-score thresholds learned from the references.

    image_threshold / pixel_threshold: raw values that map to 0.5.
    image_scores / map_maxima: raw image scores and map maxima of the calibration views (normal by
    construction). method: how they were obtained. scales: per-source scales of mean fusion.
    """

    image_threshold: float
    pixel_threshold: float
    image_scores: list[float]
    method: str
    map_maxima: list[float] = field(default_factory=list)
    scales: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**data)

    def image(self, raw: np.ndarray | float) -> np.ndarray | float:
        return DECISION_LEVEL * raw / self.image_threshold

    def pixel(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Calibrated map; ``out`` (e.g. ``raw`` itself) receives it without a temporary copy."""
        if out is None:
            return DECISION_LEVEL * raw / self.pixel_threshold
        np.multiply(raw, DECISION_LEVEL, out=out)
        return np.divide(out, self.pixel_threshold, out=out)


def calibrate(image_scores: Sequence[float], map_maxima: Sequence[float], method: str,
              margin: float = 1.0) -> Calibration:
    """Thresholds from normal calibration views.

    image_scores: ``[N]`` raw image scores of normal views; map_maxima: ``[N]`` their maps' maxima.
    The thresholds sit at the largest normal value (times ``margin``): no reference-like image is
    flagged, and anything scoring above every normal view is.
    """
    scores = np.asarray(image_scores, dtype=np.float64)
    maxima = np.asarray(map_maxima, dtype=np.float64)
    if scores.size == 0 or maxima.size == 0:
        raise ValueError("calibration needs at least one normal view")
    tiny = 1e-6
    return Calibration(
        image_threshold=float(max(scores.max() * margin, tiny)),
        pixel_threshold=float(max(maxima.max() * margin, tiny)),
        image_scores=[float(s) for s in scores],
        method=method,
        map_maxima=[float(m) for m in maxima],
    )


def fixed_calibration(image_threshold: float, pixel_threshold: float, method: str) -> Calibration:
    """Thresholds with a meaning of their own (zero-shot: a probability of 0.5 per tap)."""
    return Calibration(image_threshold=image_threshold, pixel_threshold=pixel_threshold, image_scores=[], method=method)
