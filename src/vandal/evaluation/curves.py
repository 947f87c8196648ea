"""ROC and precision-recall curves as points to draw (the report's figures, not its numbers: the
tables' AUROC / AP come from :mod:`vandal.metrics`, exactly).

Image curves are exact (one point per distinct score). Pixel curves count every pixel of a cell
into a few hundred score bins whose edges are quantiles of the normal pixels, dense in their upper
tail where the low false-positive rates are decided, and of the defect pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Points = list[list[float]]
MAX_POINTS = 200  # per drawn curve: enough for a 300-px figure
SAMPLE_PER_MAP = 4096


def thin(points: np.ndarray, limit: int = MAX_POINTS) -> Points:
    """``[N, 2]`` points -> at most ``limit`` of them (first and last kept), rounded for JSON."""
    if len(points) > limit:
        points = points[np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))]
    return np.round(points, 5).tolist()


def curves_from_counts(positives: np.ndarray, negatives: np.ndarray) -> dict[str, Points] | None:
    """Positive and negative counts per score bin, HIGHEST scores first -> ``{"roc", "pr"}`` points
    (ROC: false-positive rate, true-positive rate; PR: recall, precision). None with one class."""
    positives, negatives = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    total_pos, total_neg = positives.sum(), negatives.sum()
    if total_pos == 0 or total_neg == 0:
        return None
    tp, fp = np.cumsum(positives), np.cumsum(negatives)
    roc = np.concatenate([[[0.0, 0.0]], np.stack([fp / total_neg, tp / total_pos], axis=1)])
    called = tp + fp > 0
    recall, precision = tp[called] / total_pos, tp[called] / (tp[called] + fp[called])
    pr = np.concatenate([[[0.0, precision[0]]], np.stack([recall, precision], axis=1)])
    return {"roc": thin(roc), "pr": thin(pr)}


def image_curves(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> dict[str, Points] | None:
    """Exact curves of image scores ``[N]`` against labels ``[N]`` (NaN scores rank highest)."""
    truth = np.asarray(labels, dtype=np.float64)
    ranked = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=np.inf)
    _, bins = np.unique(-ranked, return_inverse=True)  # bin 0: the highest score
    positives = np.bincount(bins.ravel(), weights=truth)
    negatives = np.bincount(bins.ravel(), weights=1.0 - truth)
    return curves_from_counts(positives, negatives)


def _edges(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], bins: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    normal, defect = [], []
    for mask, amap in zip(masks, maps):
        values, inside = np.asarray(amap, np.float32).ravel(), np.asarray(mask, bool).ravel()
        pick = rng.integers(0, values.size, min(SAMPLE_PER_MAP, values.size))
        normal.append(values[pick][~inside[pick]])
        if inside.any():
            defect.append(values[inside][:SAMPLE_PER_MAP])
    normal_values = np.concatenate(normal) if normal else np.zeros(1, np.float32)
    tail = 1.0 - np.geomspace(1e-5, 1.0, bins * 3 // 4)  # dense where few normal pixels remain
    edges = [np.quantile(normal_values, tail)]
    if defect:
        edges.append(np.quantile(np.concatenate(defect), np.linspace(0, 1, bins // 4)))
    finite = np.concatenate(edges)
    return np.unique(finite[np.isfinite(finite)])


def pixel_curves(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], bins: int = 256
                 ) -> dict[str, Points] | None:
    """Binned curves of every pixel: bool masks ``[H, W]`` against maps ``[H, W]`` (same shapes)."""
    edges = _edges(masks, maps, bins)
    positives = np.zeros(len(edges) + 1)
    negatives = np.zeros(len(edges) + 1)
    for mask, amap in zip(masks, maps):
        values = np.nan_to_num(np.asarray(amap, np.float32).ravel(), nan=np.inf)
        inside = np.asarray(mask, bool).ravel()
        index = np.searchsorted(edges, values, side="right")  # bin of each pixel, 0 = lowest
        positives += np.bincount(index[inside], minlength=len(edges) + 1)
        negatives += np.bincount(index[~inside], minlength=len(edges) + 1)
    return curves_from_counts(positives[::-1], negatives[::-1])
