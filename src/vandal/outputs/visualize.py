"""Heat-map overlays and mask images as plain uint8 arrays (no plotting library needed).

Colours are computed over bands of rows, so drawing a map of any size needs only its output
(3 bytes a pixel, or nothing more when drawn in place) plus a few MB of temporaries.
"""

from __future__ import annotations

import numpy as np

# Anchor colours of a perceptually ordered blue -> cyan -> yellow -> red ramp ("turbo"-like).
_ANCHORS = np.array([
    [48, 18, 59], [70, 107, 227], [40, 187, 236], [49, 242, 153],
    [162, 252, 60], [237, 208, 58], [251, 128, 34], [208, 47, 5], [122, 4, 3],
], dtype=np.float32)
_BAND_PIXELS = 1 << 17  # pixels per band: the colour formula's temporaries are ~100 bytes a pixel


def _band_rows(width: int) -> int:
    return max(1, _BAND_PIXELS // max(1, width))


def _ramp(values: np.ndarray) -> np.ndarray:
    """The colour ramp: floats in [0, 1] -> uint8 colours (interpolated between the anchors)."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(scaled).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (scaled - low)[..., None]
    return (_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac).round().astype(np.uint8)


# 256 colours, looked up per pixel: much cheaper than evaluating the ramp per pixel (docs/performance.md).
_LUT = _ramp(np.linspace(0.0, 1.0, 256, dtype=np.float32))


def _indices(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Floats (times ``scale``) in [0, 1] -> LUT indices 0..255; NaN -> 255, the most anomalous colour."""
    scaled = np.multiply(values, np.float32(255.0 * scale), dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=255.0)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    scaled += 0.5
    return scaled.astype(np.uint8)


def colormap(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` floats in [0, 1] -> ``[H, W, 3]`` uint8 colours (NaN: the top colour)."""
    out = np.empty((*values.shape, 3), dtype=np.uint8)
    rows = _band_rows(values.shape[-1] if values.ndim > 1 else 1)
    for top in range(0, values.shape[0], rows):
        out[top: top + rows] = _LUT[_indices(values[top: top + rows])]
    return out


def overlay(image: np.ndarray, anomaly_map: np.ndarray, level: float = 0.5, alpha: float = 0.5,
            mask: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Blend a calibrated map onto the image; ``level`` (the decision threshold) maps to mid-scale.

    image ``[H, W, 3]`` uint8, anomaly_map ``[H, W]``; the colour scale runs 0 -> 2 x level so
    that the threshold sits in the middle and maps look alike across images. With ``mask``, its
    outline is drawn in white. ``out`` (``[H, W, 3]`` uint8) receives the result; it may be
    ``image`` itself, to draw in place when the image is no longer needed (saves 3 bytes a pixel).
    Blending is integer arithmetic on uint16 (weights in 1/256), never a float copy of the image.
    """
    height, width = anomaly_map.shape
    blended = np.empty_like(image) if out is None else out
    weight = np.uint16(round(alpha * 256))
    rows = _band_rows(width)
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        heat = _LUT[_indices(anomaly_map[band], 1.0 / (2.0 * level))].astype(np.uint16)
        mixed = image[band].astype(np.uint16) * (256 - weight)
        mixed += heat * weight
        mixed += 128
        blended[band] = mixed >> 8
        if mask is not None:
            # The outline needs one row of context on each side of the band.
            above, below = min(top, 1), min(height - min(height, top + rows), 1)
            context = mask[top - above: top + rows + below]
            edge = (context & ~_erode(context))[above: above + blended[band].shape[0]]
            blended[band][edge] = 255
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
    return mask.astype(np.uint8) * np.uint8(255)


def map_image(anomaly_map: np.ndarray, level: float = 0.5) -> np.ndarray:
    """A calibrated ``[H, W]`` map -> ``[H, W]`` uint8 on the overlays' scale: 0 -> 0, ``2 x level``
    (the top colour of :func:`overlay`) and above -> 255, so the threshold sits at 128. NaN -> 255,
    drawn as anomalous like the colour ramp does."""
    out = np.empty(anomaly_map.shape, dtype=np.uint8)
    rows = _band_rows(anomaly_map.shape[-1] if anomaly_map.ndim > 1 else 1)
    for top in range(0, anomaly_map.shape[0], rows):
        band = np.nan_to_num(anomaly_map[top: top + rows].astype(np.float32) / (2.0 * level), nan=1.0)
        out[top: top + rows] = (np.clip(band, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return out
