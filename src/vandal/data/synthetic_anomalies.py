"""Synthetic defects pasted into normal images, to see where anomalies would score (calibration).

Three kinds, each returning ``(image, mask)`` with ``image`` ``[H, W, 3]`` uint8 and ``mask``
``[H, W]`` bool, never touching the input:

- ``cutpaste``: a rectangle cut from one place of the image and pasted at another, its brightness
  jittered (CutPaste, Li et al. 2021): a defect made of the image's own material.
- ``perlin``: a blob shaped by thresholded Perlin noise, filled with a fine noise texture
  blended over the image (DRAEM-style, with no outside texture data set).
- ``natural``: a blob filled with 1/f noise, the spectrum of natural images: a foreign object or
  stain.

Fills take their colour and contrast from the image itself (its mean and spread, shifted by up to
one spread), so a defect is plausible material in the wrong structure, not a saturated sticker that
any detector finds: the point is to probe the level where subtle defects start.

Sizes are drawn log-uniformly as a share of the image area (``area``), so small and large defects
are both present. Everything is numpy and seeded by the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

KINDS = ("cutpaste", "perlin", "natural")
DEFAULT_AREA = (0.002, 0.03)  # share of the image area: a few pixels wide up to a large stain


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Gradient (Perlin) noise ``[height, width]`` with ``cells`` lattice cells along the longer side,
    values roughly in [-1, 1]."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    side = max(height, width)
    gy, gx = int(np.ceil(cells * height / side)) + 1, int(np.ceil(cells * width / side)) + 1
    angles = rng.uniform(0, 2 * np.pi, (gy, gx))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = np.arange(height) * (cells / side)
    x = np.arange(width) * (cells / side)
    yi, xi = np.floor(y).astype(int), np.floor(x).astype(int)
    yf, xf = (y - yi)[:, None], (x - xi)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[(yi + dy)[:, None], (xi + dx)[None, :]]
        return g[..., 0] * (xf - dx) + g[..., 1] * (yf - dy)

    u, v = _fade(xf), _fade(yf)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return np.sqrt(2.0) * (top * (1 - v) + bottom * v)


def _draw_area(rng: np.random.Generator, area: tuple[float, float]) -> float:
    lo, hi = area
    if not 0 < lo <= hi < 1:
        raise ValueError(f"area must be a (low, high) share of the image in (0, 1), got {area}")
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def blob_mask(height: int, width: int, rng: np.random.Generator,
              area: tuple[float, float] = DEFAULT_AREA) -> np.ndarray:
    """An irregular blob ``[height, width]`` bool: an ellipse of the drawn area roughened by Perlin noise."""
    share = _draw_area(rng, area)
    aspect = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    ry = np.sqrt(share * height * width / np.pi / aspect)
    rx = ry * aspect
    cy = rng.uniform(min(ry, height / 2), max(height - ry, height / 2))
    cx = rng.uniform(min(rx, width / 2), max(width - rx, width / 2))
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    radius = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    cells = max(2, int(round(max(height, width) / max(4.0, min(rx, ry)))))
    rough = 0.35 * perlin_noise(height, width, cells, rng)
    mask = radius + rough < 1.0
    if not mask.any():  # a tiny blob can vanish under the roughening: keep its centre
        mask[int(np.clip(cy, 0, height - 1)), int(np.clip(cx, 0, width - 1))] = True
    return mask


def cut_paste(image: np.ndarray, rng: np.random.Generator,
              area: tuple[float, float] = DEFAULT_AREA) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle of the image copied elsewhere, brightness jittered by up to 25%."""
    height, width = image.shape[:2]
    share = _draw_area(rng, area)
    aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
    h = int(np.clip(round(np.sqrt(share * height * width / aspect)), 2, height - 1))
    w = int(np.clip(round(h * aspect), 2, width - 1))
    sy, sx = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    ty, tx = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    patch = image[sy: sy + h, sx: sx + w].astype(np.float32) * rng.uniform(0.75, 1.25)
    out = image.copy()
    out[ty: ty + h, tx: tx + w] = np.clip(patch, 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), bool)
    mask[ty: ty + h, tx: tx + w] = True
    return out, mask


def _blend(image: np.ndarray, fill: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask] = (1 - opacity) * out[mask] + opacity * fill[mask]
    return np.clip(out, 0, 255).astype(np.uint8)


def _image_colour(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The image's mean colour shifted by up to one spread (mostly in brightness, a little in hue, so a
    grey image gets a near-grey defect), and its spread (grey levels)."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    spread = float(max(pixels.std(), 8.0))
    shift = rng.uniform(-1, 1) + 0.25 * rng.uniform(-1, 1, 3)
    return pixels.mean(0) + shift * spread, spread


def perlin_patch(image: np.ndarray, rng: np.random.Generator,
                 area: tuple[float, float] = DEFAULT_AREA) -> tuple[np.ndarray, np.ndarray]:
    """A Perlin-shaped blob filled with a fine noise texture in the image's own colour range."""
    height, width = image.shape[:2]
    mask = blob_mask(height, width, rng, area)
    detail = perlin_noise(height, width, int(rng.integers(16, 48)), rng)
    colour, spread = _image_colour(image, rng)
    fill = colour[None, None, :] + rng.uniform(1.0, 2.0) * spread * detail[..., None]
    return _blend(image, fill, mask, float(rng.uniform(0.6, 1.0))), mask


def pink_noise(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f amplitude spectrum (as natural images), ``[height, width]``, zero mean, unit std."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width))
    phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width))
    return (field - field.mean()) / (field.std() + 1e-12)


def natural_patch(image: np.ndarray, rng: np.random.Generator,
                  area: tuple[float, float] = DEFAULT_AREA) -> tuple[np.ndarray, np.ndarray]:
    """A blob filled with 1/f noise: natural-image statistics, foreign to the part."""
    height, width = image.shape[:2]
    mask = blob_mask(height, width, rng, area)
    colour, spread = _image_colour(image, rng)
    tint = 1 + 0.3 * rng.normal(0, 1, 3)
    field = pink_noise(height, width, rng)
    fill = colour[None, None, :] + spread * field[..., None] * tint[None, None, :]
    return _blend(image, fill, mask, float(rng.uniform(0.7, 1.0))), mask


_MAKERS = {"cutpaste": cut_paste, "perlin": perlin_patch, "natural": natural_patch}


def synthetic_anomaly(image: np.ndarray, rng: np.random.Generator, kind: str | None = None,
                      area: tuple[float, float] = DEFAULT_AREA) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic defect of ``kind`` (one of :data:`KINDS`, drawn at random when None)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    if kind is None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind not in _MAKERS:
        raise ValueError(f"unknown synthetic anomaly {kind!r}; choose one of {KINDS}")
    return _MAKERS[kind](image, rng, area)
