"""Metrics against scikit-learn and a slow per-threshold AU-PRO reference."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pytest
from scipy import ndimage

from vandal.metrics import (
    aupro,
    aupro_legacy,
    auroc,
    average_precision,
    f1_max,
    image_metrics,
    pixel_metrics,
    vand_score,
)

sk = pytest.importorskip("sklearn.metrics")


def sk_f1max(y: np.ndarray, s: np.ndarray) -> float:
    p, r, _ = sk.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    return float(np.max(f1[np.isfinite(f1)]))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [2, 7, 50, 1000])
def test_binary_metrics_match_sklearn_with_ties(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    y[0], y[-1] = True, False  # both classes present
    s = np.round(rng.random(n) + 0.3 * y, 1)  # heavy ties, also across classes
    assert auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-9)
    assert average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-9)
    assert f1_max(y, s) == pytest.approx(sk_f1max(y, s), abs=1e-9)
    m = image_metrics(y.astype(int), s.astype(np.float32))
    assert set(m) == {"auroc", "ap", "f1max"}
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-6)


def test_binary_metrics_untied_continuous() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    s = rng.normal(size=500) + y
    assert auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
    assert f1_max(y, s) == pytest.approx(sk_f1max(y, s), abs=1e-12)


def test_one_class_inputs() -> None:
    s = np.array([0.1, 0.5, 0.5])
    for y in (np.zeros(3, int), np.ones(3, int)):
        with pytest.raises(ValueError, match="one class"):
            auroc(y, s)
    with pytest.raises(ValueError, match="No positive"):
        average_precision(np.zeros(3), s)
    with pytest.raises(ValueError, match="No positive"):
        f1_max(np.zeros(3), s)
    # Only positives: precision is 1 everywhere (sklearn agrees).
    assert average_precision(np.ones(3), s) == 1.0 == sk.average_precision_score(np.ones(3), s)
    assert f1_max(np.ones(3), s) == 1.0


def test_binary_input_validation() -> None:
    with pytest.raises(ValueError, match="equal length"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.1, np.nan])


# ---------------------------------------------------------------------------------------------
# AU-PRO


def reference_aupro(masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Slow MVTec AU-PRO: PRO and FPR at every distinct score, trapezoid with x_max."""
    comps, normal = [], []
    for mask, amap in zip(masks, maps):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        comps += [amap[labels == k].astype(np.float64) for k in range(1, n + 1)]
        normal.append(amap[~mask.astype(bool)].astype(np.float64))
    normal = np.concatenate(normal)
    xs, ys = [0.0], [0.0]
    for t in np.unique(np.concatenate([normal, *comps]))[::-1]:
        xs.append(np.mean(normal >= t))
        ys.append(np.mean([np.mean(c >= t) for c in comps]))
    xs.append(1.0)
    ys.append(1.0)
    # The MVTec AD evaluation code's trapezoid with the endpoint interpolated at x_max.
    x, y = np.array(xs), np.array(ys)
    correction = 0.0
    if fpr_limit not in x:
        i = bisect_right(xs, fpr_limit)
        y_interp = y[i - 1] + (y[i] - y[i - 1]) * (fpr_limit - x[i - 1]) / (x[i] - x[i - 1])
        correction = 0.5 * (y_interp + y[i - 1]) * (fpr_limit - x[i - 1])
    keep = x <= fpr_limit
    x, y = x[keep], y[keep]
    return (np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction) / fpr_limit


def random_case(seed: int, n: int = 5, size: int = 12, decimals: int = 1):
    """Small masks with several components (some on borders), some all-normal, tied scores."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        if i % 3 == 2:
            continue  # an anomaly-free image
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, size, 2)
            h, w = rng.integers(1, 5, 2)
            masks[i, r : r + h, c : c + w] = True
        masks[i, 0, : rng.integers(1, size)] |= i % 2 == 0  # touch the top border
        masks[i, rng.integers(0, size), rng.integers(0, size)] = True  # maybe a diagonal neighbour
    maps = np.round(rng.random(masks.shape) + 0.4 * masks, decimals)
    return masks, maps


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_matches_slow_reference(seed: int, fpr_limit: float) -> None:
    masks, maps = random_case(seed, decimals=1 if seed % 2 else 3)
    expected = reference_aupro(list(masks), list(maps), fpr_limit)
    assert aupro(masks, maps, fpr_limit) == pytest.approx(expected, abs=1e-6)
    maps16 = maps.astype(np.float16)
    got16 = aupro(masks, maps16, fpr_limit)
    assert got16 == pytest.approx(reference_aupro(list(masks), list(maps16), fpr_limit), abs=1e-6)
    assert 0.0 <= got16 <= 1.0


@pytest.mark.parametrize("seed", range(4))
def test_aupro_crossing_segment_with_interleaved_scores(seed: int) -> None:
    # Continuous scores, ~40% anomalous: anomalous scores fall between consecutive normal ones
    # around every FPR, so the interpolated segment at fpr_limit is never flat.
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:12, 3:9] = masks[1, :8, 8:] = masks[1, 12:, :5] = True
    maps = rng.random(masks.shape) + 0.2 * masks
    for fpr_limit in (0.3, 0.1234, 0.77):
        expected = reference_aupro(list(masks), list(maps), fpr_limit)
        assert aupro(masks, maps, fpr_limit) == pytest.approx(expected, abs=1e-9)


def test_aupro_lists_of_different_sizes_and_float32() -> None:
    m1, s1 = random_case(1, n=3, size=10)
    m2, s2 = random_case(2, n=3, size=17)
    masks, maps = [*m1, *m2], [*s1.astype(np.float32), *s2.astype(np.float32)]
    expected = reference_aupro(masks, maps)
    assert aupro(masks, maps) == pytest.approx(expected, abs=1e-6)
    uint8_masks = [m.astype(np.uint8) for m in masks]
    assert pixel_metrics(uint8_masks, maps)["aupro"] == pytest.approx(expected, abs=1e-6)


def test_eight_connectivity_counts_diagonal_pixels_as_one_region() -> None:
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 3, 3] = True
    amap = np.zeros((1, 4, 4))
    amap[0, 0, 0] = amap[0, 3, 3] = 1.0
    # 8-connected regions {(0,0),(1,1)} half found and {(3,3)} found: PRO 0.75 at FPR 0, then
    # (1, 1); area (0.75 + 1) / 2. Three 4-connected regions would give (2/3 + 1) / 2.
    assert aupro(mask, amap, fpr_limit=1.0) == pytest.approx(0.875, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pixel_metrics_match_sklearn_and_perfect_maps(dtype: type) -> None:
    masks, maps = random_case(3, decimals=2)
    m = pixel_metrics(masks, maps.astype(dtype))
    y, s = masks.ravel(), maps.astype(dtype).astype(np.float64).ravel()
    assert set(m) == {"auroc", "ap", "f1max", "aupro"}
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-9)
    assert m["ap"] == pytest.approx(sk.average_precision_score(y, s), abs=1e-9)
    assert m["f1max"] == pytest.approx(sk_f1max(y, s), abs=1e-9)
    perfect = pixel_metrics(masks, masks.astype(dtype))
    assert perfect == pytest.approx({"auroc": 1.0, "ap": 1.0, "f1max": 1.0, "aupro": 1.0}, abs=1e-12)
    assert all(type(v) is float for v in perfect.values())


def test_pixel_float16_negative_zero_and_ties_merge() -> None:
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 1, 1] = True
    maps = np.zeros((2, 3, 3), dtype=np.float16)
    maps[1] = -0.0  # equal to +0.0: must be one tie group
    maps[0, 1, 1] = 0.0
    m = pixel_metrics(masks, maps)
    assert m["auroc"] == pytest.approx(0.5)
    assert m["aupro"] == pytest.approx(reference_aupro(list(masks), list(maps)), abs=1e-9)


def test_aupro_errors() -> None:
    masks, maps = random_case(0)
    with pytest.raises(ValueError, match="no mask contains"):
        aupro(np.zeros_like(masks), maps)
    with pytest.raises(ValueError, match="no anomaly-free"):
        aupro(np.ones_like(masks), maps)
    with pytest.raises(ValueError, match="shape"):
        aupro(masks, maps[:, :-1])
    with pytest.raises(ValueError, match="as many masks as maps"):
        aupro(masks, maps[:-1])
    with pytest.raises(ValueError, match=r"\[N,H,W\]"):
        aupro(masks[0], maps[0])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(masks, maps, fpr_limit=0.0)
    bad = maps.astype(np.float16)
    bad[2, 0, 0] = np.nan  # in an anomaly-free image: caught by the histogram path
    with pytest.raises(ValueError, match="NaN"):
        aupro(masks, bad)
    with pytest.raises(ValueError, match="NaN"):
        aupro(masks, bad.astype(np.float32))
    with pytest.raises(ValueError, match="only 0 and 1"):
        aupro(masks * 2, maps)


def reference_cal_pro_score(masks: np.ndarray, amaps: np.ndarray, max_step: int = 200) -> float:
    """APRIL-GAN's cal_pro_score, line by line, with scipy's label in place of skimage's."""
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()  # in the maps' dtype: float32 maps give float32 thresholds
    delta = (max_th - min_th) / max_step
    pros, fprs = [], []
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th], binary_amaps[amaps > th] = 0, 1
        pro = []
        for binary_amap, mask in zip(binary_amaps, masks):
            labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
            for k in range(1, n + 1):
                region = labels == k
                pro.append(binary_amap[region].sum() / region.sum())
        inverse_masks = 1 - masks
        fprs.append(np.logical_and(inverse_masks, binary_amaps).sum() / inverse_masks.sum())
        pros.append(np.array(pro).mean())
    pros, fprs = np.array(pros), np.array(fprs)
    idxes = fprs < 0.3
    fprs = fprs[idxes]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return sk.auc(fprs, pros[idxes])


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_aupro_legacy_matches_reference_code(seed: int, dtype) -> None:
    masks, maps = random_case(seed, n=5, size=14, decimals=3)
    maps = maps.astype(dtype)
    expected = reference_cal_pro_score(masks.astype(np.uint8), maps)
    assert aupro_legacy(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_aupro_legacy() -> None:
    masks, maps = random_case(4, n=6, size=20, decimals=3)
    value = aupro_legacy(masks, maps)
    assert 0.0 <= value <= 1.0
    coarse = aupro_legacy(masks, maps.astype(np.float16), num_thresholds=50)
    assert coarse == pytest.approx(value, abs=0.1)
    # A perfect separator with spread scores: PRO stays 1 while FPR sweeps [0, 0.3).
    rng = np.random.default_rng(0)
    perfect = np.where(masks, 0.6 + 0.4 * rng.random(masks.shape), 0.5 * rng.random(masks.shape))
    assert aupro_legacy(masks, perfect) > 0.99
    # A binary perfect map keeps FPR at 0 for every threshold: the reference yields NaN.
    assert np.isnan(aupro_legacy(masks, masks.astype(float)))
    with pytest.raises(ValueError, match="constant"):
        aupro_legacy(masks, np.zeros(masks.shape))
    maps[-1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        aupro_legacy(masks, maps)


def test_vand_score() -> None:
    assert vand_score(0.8, 0.4) == pytest.approx(2 * 0.8 * 0.4 / 1.2)
    assert vand_score(1.0, 1.0) == 1.0
    assert vand_score(0.0, 0.0) == 0.0
    with pytest.raises(ValueError):
        vand_score(1.5, 0.5)
