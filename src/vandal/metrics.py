"""Evaluation metrics: AUROC, AP, F1-max, AU-PRO (exact and APRIL-GAN legacy), VAND score.

Pure numpy (scipy.ndimage only for connected components). Ties are handled exactly as
scikit-learn's ``roc_auc_score``, ``average_precision_score`` and ``precision_recall_curve`` do.

One-class inputs: with no positive sample AUROC, AP and F1-max raise ``ValueError`` (sklearn
raises for AUROC but returns AP = 0 with a warning; an evaluation without anomalies is a protocol
error, so we fail loudly). With no negative sample AUROC raises, AP and F1-max are 1.0 (as sklearn).

Pixel metrics never build a float64 copy of the stack: the anomaly-free scores become a
65536-bin histogram (float16 maps) or one in-place sort (float32, or float64 for other dtypes),
and the few anomalous pixels, sorted, are searched in it; AU-PRO then needs no per-threshold work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

ArrayOrList = np.ndarray | Sequence[np.ndarray]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class _Counts(NamedTuple):
    """Scores of one class, ascending: distinct values with counts, or (cum None) raw sorted."""

    values: np.ndarray  # [K] ascending; distinct when cum is given
    cum: np.ndarray | None  # [K+1] int64; cum[i] = number of scores < values[i]; cum[-1] = total

    @property
    def total(self) -> int:
        return len(self.values) if self.cum is None else int(self.cum[-1])

    def count_less(self, x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.values, x, side="left")
        return i if self.cum is None else self.cum[i]

    def count_less_equal(self, x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.values, x, side="right")
        return i if self.cum is None else self.cum[i]

    def value_at_rank(self, rank: int) -> np.generic:
        """The score at 0-based position ``rank`` of the ascending order (ties repeated)."""
        if self.cum is None:
            return self.values[rank]
        return self.values[np.searchsorted(self.cum, rank, side="right") - 1]


def _distinct(sorted_values: np.ndarray, counts: np.ndarray) -> _Counts:
    """Group ascending values with multiplicities into distinct values (merges -0.0 and +0.0)."""
    n = len(sorted_values)
    if n == 0:
        return _Counts(sorted_values, np.zeros(1, dtype=np.int64))
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    cum = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(np.add.reduceat(counts, starts), out=cum[1:])
    return _Counts(sorted_values[starts], cum)


def _check_binary(y: np.ndarray, name: str) -> np.ndarray:
    if y.dtype == bool:
        return y
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must be boolean or contain only 0 and 1")
    return y.astype(bool)


def _check_finite(x: np.ndarray, name: str) -> None:
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _binary_inputs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, _Counts]:
    """Validate 1-D labels/scores; return sorted positive scores and the negatives' counts."""
    y, s = np.asarray(labels), np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"labels and scores must be 1-D, equal length; got {y.shape}, {s.shape}")
    y = _check_binary(y, "labels")
    s = s.astype(np.float64)
    _check_finite(s, "scores")
    return np.sort(s[y]), _Counts(np.sort(s[~y]), None)


def _auroc(pos: np.ndarray, neg: _Counts) -> float:
    n_neg = neg.total
    if len(pos) == 0 or n_neg == 0:
        raise ValueError("Only one class present: ROC AUC is not defined")
    # Mann-Whitney U with ties counted one half == trapezoidal area under the exact ROC curve.
    twice_u = int(neg.count_less(pos).sum()) + int(neg.count_less_equal(pos).sum())
    return twice_u / (2 * len(pos) * n_neg)


def _pr_points(pos: np.ndarray, neg: _Counts) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP counts at each distinct positive score, thresholds descending."""
    if len(pos) == 0:
        raise ValueError("No positive samples: precision/recall metrics are not defined")
    desc = pos[::-1]  # callers pass positives sorted ascending
    # Only thresholds at positive scores matter: elsewhere recall does not move (AP) and
    # F1 is lower than at the positive score just above (same TP, more FP).
    last = np.append(desc[1:] != desc[:-1], True)
    tp = np.flatnonzero(last) + 1
    thresholds = desc[last]
    fp = neg.total - neg.count_less(thresholds)
    return tp.astype(np.float64), fp.astype(np.float64)


def _ap_f1max(pos: np.ndarray, neg: _Counts) -> tuple[float, float]:
    tp, fp = _pr_points(pos, neg)
    recall_step = np.diff(tp, prepend=0.0) / len(pos)
    ap = float(np.sum(recall_step * tp / (tp + fp)))
    # 2PR / (P + R) == 2 TP / (TP + FP + #positives); never 0/0 since #positives > 0.
    return ap, float(np.max(2 * tp / (tp + fp + len(pos))))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve. labels [N] in {0,1}, scores [N]; one class -> ValueError."""
    return _auroc(*_binary_inputs(labels, scores))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's step-wise sum). No positives -> ValueError."""
    return _ap_f1max(*_binary_inputs(labels, scores))[0]


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """Max over the precision-recall curve of 2PR/(P+R). No positives -> ValueError."""
    return _ap_f1max(*_binary_inputs(labels, scores))[1]


def image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Image-level ``{"auroc", "ap", "f1max"}`` from labels [N] and scores [N]."""
    pos, neg = _binary_inputs(labels, scores)
    ap, f1 = _ap_f1max(pos, neg)
    return {"auroc": _auroc(pos, neg), "ap": ap, "f1max": f1}


# ---------------------------------------------------------------------------------------------
# Pixel level


def _as_images(x: ArrayOrList, name: str) -> list[np.ndarray]:
    """[N,H,W] (or [N,1,H,W]) array or a sequence of [H,W] arrays -> list of 2-D views."""
    if isinstance(x, np.ndarray):
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"{name} must be [N,H,W] or a list of [H,W] arrays, got {x.shape}")
        return list(x)
    images = [np.asarray(a) for a in x]
    for i, a in enumerate(images):
        if a.ndim != 2:
            raise ValueError(f"{name}[{i}] must be 2-D [H,W], got shape {a.shape}")
    return images


def _regions(mask: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray, int] | None:
    """8-connected regions of a [H,W] bool mask (skimage's default for 2-D): bounding box,
    labels inside it, count; None if the mask is empty. Labelling only the box is much faster."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    labels, n = ndimage.label(mask[box], structure=_EIGHT_CONNECTED)
    return box, labels, n


def _anomalous_pixels(mask_list: list[np.ndarray], map_list: list[np.ndarray], dtype: type | None = None
                      ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Check masks against maps (in place: masks become bool) and gather the anomalous pixels.

    Returns their scores ``[P]`` (cast to ``dtype`` if given), the global 8-connected component
    of each ``[P]``, the number of components, and the number of anomaly-free pixels.
    """
    pos, comp, n_comp, n_neg = [], [], 0, 0
    for i, (mask, amap) in enumerate(zip(mask_list, map_list)):
        if mask.shape != amap.shape:
            raise ValueError(f"masks[{i}] has shape {mask.shape} but maps[{i}] has shape {amap.shape}")
        mask = mask_list[i] = _check_binary(mask, f"masks[{i}]")
        n_neg += mask.size - int(np.count_nonzero(mask))
        regions = _regions(mask)
        if regions is None:
            continue
        box, labels, n = regions
        inside = mask[box]
        scores = amap[box][inside]
        pos.append(scores if dtype is None else scores.astype(dtype))
        comp.append(labels[inside].astype(np.int64) + (n_comp - 1))
        n_comp += n
    pos_scores = np.concatenate(pos) if pos else np.zeros(0, dtype=dtype or np.float64)
    comp_ids = np.concatenate(comp) if comp else np.zeros(0, dtype=np.int64)
    return pos_scores, comp_ids, n_comp, n_neg


class _PixelData(NamedTuple):
    pos: np.ndarray  # [P] scores of anomalous pixels, ascending
    comp: np.ndarray  # [P] global ground-truth component index of each of them
    n_comp: int
    neg: _Counts  # scores of anomaly-free pixels


def _pixel_data(masks: ArrayOrList, maps: ArrayOrList) -> _PixelData:
    mask_list, map_list = _as_images(masks, "masks"), _as_images(maps, "maps")
    if len(mask_list) != len(map_list) or not mask_list:
        raise ValueError(f"need as many masks as maps (> 0), got {len(mask_list)} and {len(map_list)}")
    float16 = all(m.dtype == np.float16 for m in map_list)
    # float16/float32 scores are exact in float32; anything else is compared in float64.
    work = np.float32 if all(m.dtype in (np.float16, np.float32) for m in map_list) else np.float64
    pos_scores, comp_ids, n_comp, n_neg = _anomalous_pixels(mask_list, map_list, work)
    _check_finite(pos_scores, "maps")
    # Sorted needles make every later searchsorted cache-friendly (20x faster on big stacks).
    order = np.argsort(pos_scores)
    pos_scores, comp_ids = pos_scores[order], comp_ids[order]

    if float16:
        # Histogram of the 65536 float16 bit patterns: exact, sort-free, tiny memory.
        hist = np.zeros(1 << 16, dtype=np.int64)
        for amap in map_list:
            hist += np.bincount(np.ascontiguousarray(amap).view(np.uint16).ravel(), minlength=1 << 16)
        hist -= np.bincount(pos_scores.astype(np.float16).view(np.uint16), minlength=1 << 16)
        bits = np.flatnonzero(hist).astype(np.uint16)
        values = bits.view(np.float16).astype(work)
        _check_finite(values, "maps")
        order = np.argsort(values)
        neg = _distinct(values[order], hist[bits][order])
    else:
        buf, offset = np.empty(n_neg, dtype=work), 0
        for mask, amap in zip(mask_list, map_list):
            vals = amap[~mask]
            buf[offset : offset + len(vals)] = vals
            offset += len(vals)
        buf.sort()
        if n_neg and not (np.isfinite(buf[0]) and np.isfinite(buf[-1])):  # NaNs sort last
            raise ValueError("maps contains NaN or infinite values")
        neg = _Counts(buf, None)  # searchsorted counts ties directly: no grouping needed
    return _PixelData(pos_scores, comp_ids, n_comp, neg)


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")


def _aupro(data: _PixelData, fpr_limit: float) -> float:
    if data.n_comp == 0:
        raise ValueError("AU-PRO is not defined: no mask contains an anomalous pixel")
    neg, pos, n = data.neg, data.pos, data.neg.total
    if n == 0:
        raise ValueError("AU-PRO is not defined: there are no anomaly-free pixels")
    # Per-pixel weight so that the weight sum above a threshold is the mean per-region overlap.
    sizes = np.bincount(data.comp, minlength=data.n_comp)
    weight = 1.0 / (data.n_comp * sizes[data.comp])

    # Curve vertices sit at distinct normal scores d (descending): FP jumps there from the
    # level of the previous vertex to #neg >= d, PRO from weight(s > d) to weight(s >= d);
    # anomaly-only scores add vertical, zero-area steps. The segment crossing fpr_limit ends at
    # d_cut, the normal score of rank n - floor(n * fpr_limit) - 1 (ascending), if any.
    rank = n - int(np.floor(n * fpr_limit)) - 1
    d_cut = neg.value_at_rank(rank) if rank >= 0 else None
    above_cut = 0 if d_cut is None else int(neg.count_less_equal(np.array([d_cut]))[0])
    # Swapping the sums, the full segments' trapezoids are a weighted Mann-Whitney count per
    # anomalous pixel over the normal pixels above d_cut (ties count one half).
    below = np.maximum(neg.count_less(pos) - above_cut, 0)
    below_or_tied = np.maximum(neg.count_less_equal(pos) - above_cut, 0)
    area = float(np.dot(weight, below + below_or_tied)) / (2 * n)
    if d_cut is not None:  # the crossing segment, interpolated linearly at fpr_limit
        x0 = (n - above_cut) / n
        x1 = (n - int(neg.count_less(np.array([d_cut]))[0])) / n
        y0, y1 = float(weight[pos > d_cut].sum()), float(weight[pos >= d_cut].sum())
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        area += (fpr_limit - x0) * (y0 + y_lim) / 2
    return float(area / fpr_limit)


def aupro(masks: ArrayOrList, maps: ArrayOrList, fpr_limit: float = 0.3) -> float:
    """Exact normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition).

    masks, maps: [N,H,W] arrays or lists of [H,W] arrays. Ground-truth regions are the
    8-connected components over all images; PRO(t) is the mean over regions of the fraction of
    region pixels with score >= t; FPR(t) is over all anomaly-free pixels (good images included).
    Every distinct score is a threshold; trapezoid integration with the endpoint interpolated,
    divided by ``fpr_limit``. Raises ValueError without any anomalous or anomaly-free pixel.
    """
    _check_fpr_limit(fpr_limit)
    return _aupro(_pixel_data(masks, maps), fpr_limit)


def pixel_metrics(masks: ArrayOrList, maps: ArrayOrList, fpr_limit: float = 0.3) -> dict[str, float]:
    """Pixel-level ``{"auroc", "ap", "f1max", "aupro"}`` over all pixels of all images.

    masks: [N,H,W] bool/0-1 (or a list of [H,W]); maps: same shapes, any float dtype (float16
    fastest). All pixels are pooled; AU-PRO as in :func:`aupro`.
    """
    _check_fpr_limit(fpr_limit)
    data = _pixel_data(masks, maps)
    ap, f1 = _ap_f1max(data.pos, data.neg)
    auc = _auroc(data.pos, data.neg)
    return {"auroc": auc, "ap": ap, "f1max": f1, "aupro": _aupro(data, fpr_limit)}


def aupro_legacy(
    masks: ArrayOrList, maps: ArrayOrList, num_thresholds: int = 200, fpr_limit: float = 0.3
) -> float:
    """AU-PRO as computed by the APRIL-GAN code (``cal_pro_score``); NOT the MVTec definition.

    Thresholds ``np.arange(min, max, (max - min) / num_thresholds)`` computed in the maps' own
    dtype, as the reference computes them on its float32 array (docs/method.md §8); at each, pixels
    with score > t are positive; PRO = mean over 8-connected ground-truth regions (per image) of the
    overlap ratio, FPR = FP / all anomaly-free pixels. Points with FPR < ``fpr_limit`` are kept,
    their FPRs min-max rescaled to [0, 1], and PRO integrated over them by the trapezoid rule.
    Returns NaN, as the reference does, when the kept FPRs do not span an interval (e.g. a map
    that separates perfectly at every threshold). The slow per-threshold reference.
    """
    _check_fpr_limit(fpr_limit)
    mask_list, map_list = _as_images(masks, "masks"), _as_images(maps, "maps")
    if len(mask_list) != len(map_list) or not mask_list:
        raise ValueError(f"need as many masks as maps (> 0), got {len(mask_list)} and {len(map_list)}")
    pos_scores, region_of_pixel, n_regions, n_neg = _anomalous_pixels(mask_list, map_list)
    if n_regions == 0 or n_neg == 0:
        raise ValueError("AU-PRO needs both anomalous and anomaly-free pixels")
    area = np.bincount(region_of_pixel, minlength=n_regions)
    # np.min/np.max propagate NaN, so one finiteness check of the extremes covers every pixel.
    dtype = np.result_type(*map_list)
    lo = np.min([np.min(m) for m in map_list]).astype(dtype)
    hi = np.max([np.max(m) for m in map_list]).astype(dtype)
    _check_finite(np.array([lo, hi], dtype=np.float64), "maps")
    if hi == lo:
        raise ValueError("maps are constant: no thresholds to evaluate")
    pros, fprs = [], []
    for t in np.arange(lo, hi, (hi - lo) / num_thresholds):
        tp = np.bincount(region_of_pixel, weights=pos_scores > t, minlength=n_regions)
        fp = sum(int(np.count_nonzero((m > t) & ~k)) for m, k in zip(map_list, mask_list))
        pros.append(np.mean(tp / area))
        fprs.append(fp / n_neg)
    pro_arr, fpr_arr = np.array(pros), np.array(fprs)
    keep = fpr_arr < fpr_limit
    pro_arr, fpr_arr = pro_arr[keep], fpr_arr[keep]
    if len(fpr_arr) < 2 or fpr_arr.max() == fpr_arr.min():
        return float("nan")
    fpr_arr = (fpr_arr - fpr_arr.min()) / (fpr_arr.max() - fpr_arr.min())
    # FPR falls as t rises; sklearn.metrics.auc integrates the decreasing curve the same way.
    return float(np.sum(-np.diff(fpr_arr) * (pro_arr[1:] + pro_arr[:-1]) / 2))


def vand_score(image_f1max: float, pixel_f1max: float) -> float:
    """VAND challenge score: harmonic mean of image and pixel F1-max (0 if both are 0)."""
    a, b = float(image_f1max), float(pixel_f1max)
    if not (0 <= a <= 1 and 0 <= b <= 1):
        raise ValueError(f"F1 values must be in [0, 1], got {a} and {b}")
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)
