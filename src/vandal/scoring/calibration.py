"""Scores calibrated on the references only, so one image's score never depends on another test image.

Raw scores (cosine distances, text probabilities) are mapped linearly so that the decision
threshold learned from the references lands on 0.5: ``calibrated = 0.5 * raw / threshold``.
The map is monotonic (rankings and AUROC are unchanged) and has no clipping (no ties at the top).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DECISION_LEVEL = 0.5


@dataclass
class Calibration:
    """Raw-score thresholds learned from the references.

    image_threshold / pixel_threshold: raw values that map to 0.5.
    image_scores: raw image scores of the calibration views (normal by construction).
    """

    image_threshold: float
    pixel_threshold: float
    image_scores: list[float]
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(**data)

    def image(self, raw: np.ndarray | float) -> np.ndarray | float:
        return DECISION_LEVEL * raw / self.image_threshold

    def pixel(self, raw: np.ndarray) -> np.ndarray:
        return DECISION_LEVEL * raw / self.pixel_threshold


def calibrate(image_scores: np.ndarray, map_maxima: np.ndarray, method: str, margin: float = 1.0) -> Calibration:
    """Thresholds from normal calibration views.

    image_scores: ``[N]`` raw image scores of normal views; map_maxima: ``[N]`` their maps' maxima.
    The thresholds sit at the largest normal value (times ``margin``): no reference-like image is
    flagged, and anything scoring above every normal view is.
    """
    image_scores = np.asarray(image_scores, dtype=np.float64)
    map_maxima = np.asarray(map_maxima, dtype=np.float64)
    if image_scores.size == 0 or map_maxima.size == 0:
        raise ValueError("calibration needs at least one normal view")
    tiny = 1e-6
    return Calibration(
        image_threshold=float(max(image_scores.max() * margin, tiny)),
        pixel_threshold=float(max(map_maxima.max() * margin, tiny)),
        image_scores=[float(s) for s in image_scores],
        method=method,
    )


def fixed_calibration(image_threshold: float, pixel_threshold: float, method: str) -> Calibration:
    """Thresholds with a meaning of their own (zero-shot: a probability of 0.5 per tap)."""
    return Calibration(image_threshold=image_threshold, pixel_threshold=pixel_threshold, image_scores=[], method=method)
