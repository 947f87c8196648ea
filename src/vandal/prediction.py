"""What the detector returns for one image, and how fused answers become it (shared by every runtime)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config_sections import PostConfig
    from .scoring.fusion import ScoredImage
    from .scoring.levels import Calibration


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
    distribution_score: the distribution source's image score, calibrated like ``pred_score`` (0.5 = its
    own level), else None. ``pred_score`` is the larger of it and ``raw_score`` calibrated (or it alone
    with ``distribution.mode = "only"``).
    """

    pred_score: float
    anomaly_map: np.ndarray
    pred_label: bool
    pred_mask: np.ndarray
    raw_score: float
    path: str | None = None
    text_score: float | None = None
    distribution_score: float | None = None


@dataclass(frozen=True)
class Levels:
    """Decision levels on the calibrated image score and map (0.5: the thresholds learned at fit)."""

    image: float
    pixel: float


def decision_levels(post: PostConfig | None, image_threshold: float | None = None,
                    pixel_threshold: float | None = None) -> Levels:
    """The one place levels are resolved: a level given to the call, else the config's, else 0.5. None
    means "not given" (a 0 is refused, never skipped); given levels are validated as the config's are."""
    from .config_sections import PostConfig
    from .scoring.levels import DECISION_LEVEL

    given = {key: value for key, value in (("image_threshold", image_threshold), ("pixel_threshold", pixel_threshold))
             if value is not None}
    post = replace(post or PostConfig(), **given)  # checked as the config is: positive and finite
    image, pixel = post.image_threshold, post.pixel_threshold
    return Levels(DECISION_LEVEL if image is None else image, DECISION_LEVEL if pixel is None else pixel)


def decide(scored: ScoredImage, calibration: Calibration, levels: Levels, name: str | None = None,
           grid: bool = False) -> Prediction:
    """One image's fused answers -> its :class:`Prediction`: views merged back to the image's size (or
    kept on the input grid, ``grid``), the image score taken on that map, both calibrated, then the
    decision levels applied. The torch detector and the ONNX runtime both end here."""
    from .scoring.fusion import fuse
    from .scoring.levels import DECISION_LEVEL

    raw, raw_score = fuse(scored, calibration.scales, grid)
    # Calibrated in place on the map's own memory: a 6000 x 6000 map is 144 MB a copy.
    anomaly_map = raw.float().cpu().numpy()
    calibration.pixel(anomaly_map, out=anomaly_map)
    pred_score = float(calibration.image(raw_score))
    # Image-level sources decide in units of their own level (1.0): the image score is the larger verdict.
    decisions = [DECISION_LEVEL * d for d in scored.decisions.values()]
    if decisions:
        pred_score = max(decisions) if scored.exclusive else max(pred_score, *decisions)
    # Written as "not below": a NaN score or pixel is flagged, never passed as normal.
    return Prediction(pred_score=pred_score, anomaly_map=anomaly_map, pred_label=not pred_score <= levels.image,
                      pred_mask=~(anomaly_map <= levels.pixel), raw_score=raw_score, path=name,
                      text_score=scored.text,
                      distribution_score=(DECISION_LEVEL * scored.decisions["distribution"]
                                          if "distribution" in scored.decisions else None))


def predictions_of(stream, skip_unreadable: bool = False):
    """``(input, image or error, prediction or None)`` triples (a ``predict_stream``) -> the predictions;
    an unreadable input raises its error, or with ``skip_unreadable`` is yielded in its place. Shared
    by every runtime's ``iter_predict``."""
    for _, image, prediction in stream:
        if prediction is not None:
            yield prediction
        elif not skip_unreadable:
            raise image
        else:
            yield image
