"""Heat-map overlays and mask images as plain uint8 arrays (no plotting library needed)."""

from __future__ import annotations

import numpy as np

# Anchor colours of a perceptually ordered blue -> cyan -> yellow -> red ramp ("turbo"-like).
_ANCHORS = np.array([
    [48, 18, 59], [70, 107, 227], [40, 187, 236], [49, 242, 153],
    [162, 252, 60], [237, 208, 58], [251, 128, 34], [208, 47, 5], [122, 4, 3],
], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` floats in [0, 1] -> ``[H, W, 3]`` uint8 colours."""
    scaled = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(scaled).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (scaled - low)[..., None]
    return (_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac).round().astype(np.uint8)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, level: float = 0.5, alpha: float = 0.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a calibrated map onto the image; ``level`` (the decision threshold) maps to mid-scale.

    image ``[H, W, 3]`` uint8, anomaly_map ``[H, W]``; the colour scale runs 0 -> 2 x level so
    that the threshold sits in the middle and maps look alike across images. With ``mask``, its
    outline is drawn in white.
    """
    heat = colormap(anomaly_map / (2.0 * level))
    blended = (image.astype(np.float32) * (1 - alpha) + heat.astype(np.float32) * alpha).round().astype(np.uint8)
    if mask is not None and mask.any():
        edge = mask & ~_erode(mask)
        blended[edge] = 255
    return blended


def _erode(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def mask_image(mask: np.ndarray) -> np.ndarray:
    """bool ``[H, W]`` -> uint8 0/255, what other tools expect of a mask PNG."""
    return mask.astype(np.uint8) * 255
