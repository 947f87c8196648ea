"""Decision levels for the memory map from held-out reference maps and synthetic defects.

The image score is the maximum of the map. A threshold at "the largest held-out value times a
margin" needs a margin per data set: on the simulated textile a new normal image scores within
~5% of the held-out maxima and the defects only ~5-10% above them; on MVTec bottle normal test
images score up to ~1.8x the held-out maxima and defects 2-5x. One margin cannot serve both.

1. Extreme values of the held-out maps. Each held-out map (leave-one-out with k >= 2 references,
   leave-neighbourhood-out with one; see memory.held_out) is cut into ``cells x cells`` cells;
   the cell maxima are fitted with a Gumbel law (moments), and the image maximum of a new normal
   image, the maximum of ``cells**2`` such cells, gets the level exceeded with probability
   ``alpha``. The spread of the cell maxima, not a constant, sets the distance above the null.
   The level may lie below the largest held-out maximum: floored there, one unusual reference of
   a few (a good part showing what the others do not) decided it alone and sat above most defects
   (KolektorSDD; the figures are in the README's surface table). Where the references are alike,
   the extreme-value level lies above every held-out maximum anyway.
2. Synthetic defects (data.synthetic_anomalies) pasted into the held-out references and scored
   the same way show where defects start. When they score far above the null (objects), the level
   rises to the geometric mean of the largest held-out maximum and their low quantile, which cuts
   false alarms without reaching the defects; when they score close to the null (fine textures),
   the extreme-value level stands.

What these levels flag (good and defective images, textile and bottle) is measured by
``benchmarks/bench_textures.py``; the README's decision tables give its figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

EULER_GAMMA = 0.5772156649015329
CELLS = 4  # 4 x 4 cells: enough maxima for a Gumbel fit from one held-out map
ALPHA = 0.05  # share of normal images allowed above the level (per image, by the model)
SYNTHETIC_QUANTILE = 0.1  # the defects' low end: the weakest tenth of the synthetic defects
LEVEL_CANDIDATES = 256  # candidate pixel levels (quantiles of the synthetic defects' pixels)


def cell_maxima(maps: torch.Tensor | np.ndarray | Sequence, cells: int = CELLS) -> np.ndarray:
    """``[N, H, W]`` maps (or a list of ``[H_i, W_i]`` maps of any sizes) -> ``[N * cells * cells]``
    maxima of a ``cells x cells`` grid of cells per map."""
    if isinstance(maps, (list, tuple)):
        return np.concatenate([cell_maxima(torch.as_tensor(m)[None], cells) for m in maps])
    maps = torch.as_tensor(maps, dtype=torch.float32)
    if maps.ndim != 3:
        raise ValueError(f"expected held-out maps [N, H, W], got {tuple(maps.shape)}")
    n, height, width = maps.shape
    if height < cells or width < cells:
        raise ValueError(f"maps of {height} x {width} cannot be cut into {cells} x {cells} cells")
    h, w = height // cells * cells, width // cells * cells
    cut = maps[:, :h, :w].reshape(n, cells, h // cells, cells, w // cells)
    return cut.amax(dim=(2, 4)).reshape(-1).double().cpu().numpy()


def gumbel_level(maxima: np.ndarray, blocks: int, alpha: float = ALPHA) -> float:
    """Level exceeded with probability ``alpha`` by the maximum of ``blocks`` draws, each a Gumbel
    fitted (by moments) to ``maxima``."""
    maxima = np.asarray(maxima, dtype=np.float64)
    if maxima.size < 2:
        raise ValueError("a Gumbel fit needs at least two maxima")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    scale = maxima.std(ddof=1) * math.sqrt(6) / math.pi
    location = maxima.mean() - EULER_GAMMA * scale
    # max of `blocks` iid Gumbel(location, scale) is Gumbel(location + scale * ln(blocks), scale)
    return float(location + scale * (math.log(blocks) - math.log(-math.log(1 - alpha))))


def synthetic_level(null_maximum: float, synthetic_scores: np.ndarray,
                    quantile: float = SYNTHETIC_QUANTILE) -> float:
    """Geometric mean of the largest held-out maximum and the synthetic defects' low quantile
    (no higher than the held-out maximum when the synthetic defects score below it)."""
    scores = np.asarray(synthetic_scores, dtype=np.float64)
    if scores.size == 0:
        return null_maximum
    low = float(np.quantile(scores, quantile))
    return math.sqrt(max(null_maximum, 0.0) * max(low, 0.0)) if low > null_maximum else null_maximum


def memory_threshold(held_out_maps: torch.Tensor | np.ndarray | Sequence,
                     synthetic_scores: np.ndarray | None = None, cells: int = CELLS, alpha: float = ALPHA) -> float:
    """Raw image-score level (map maximum) from held-out maps ``[N, H, W]`` (or a list of maps) and
    synthetic-defect scores ``[S]``."""
    maxima = cell_maxima(held_out_maps, cells)
    level = gumbel_level(maxima, cells * cells, alpha)
    if synthetic_scores is not None:
        # Not floored at the largest held-out value (module docstring, 1.): the synthetic defects raise
        # the level only when they score far above it (objects).
        null_maximum = float(maxima.max())
        raised = synthetic_level(null_maximum, synthetic_scores)
        if raised > null_maximum:
            level = max(level, raised)
    return level


def pixel_f1_level(defect_maps: Sequence, defect_masks: Sequence, normal_maps: Sequence = (),
                   candidates: int = LEVEL_CANDIDATES) -> float | None:
    """The map level whose mask best outlines synthetic defects: pixel F1 (pooled) of ``map > level``
    against the defects' masks, over the synthetic images' pixels and the normal (held-out) maps'
    pixels, which can only add false alarms. Maps ``[H_i, W_i]``, masks bool of the same shapes;
    candidates are quantiles of the defect pixels' scores. None without any defect pixel."""
    positives = np.concatenate([np.asarray(m, dtype=np.float32)[np.asarray(k, bool)]
                                for m, k in zip(defect_maps, defect_masks, strict=True)])
    if positives.size == 0:
        return None
    negatives = np.concatenate([np.asarray(m, dtype=np.float32)[~np.asarray(k, bool)]
                                for m, k in zip(defect_maps, defect_masks, strict=True)]
                               + [np.asarray(m, dtype=np.float32).ravel() for m in normal_maps])
    levels = np.unique(np.quantile(positives, np.linspace(0.0, 1.0, candidates, endpoint=False)))
    positives.sort()
    negatives.sort()
    # pixels at or above each candidate; the level returned sits just below it (masks are "map > level")
    hits = positives.size - np.searchsorted(positives, levels, side="left")
    false = negatives.size - np.searchsorted(negatives, levels, side="left")
    f1 = 2 * hits / np.maximum(1, 2 * hits + false + (positives.size - hits))
    return float(np.nextafter(np.float32(levels[int(np.argmax(f1))]), np.float32(-np.inf)))
