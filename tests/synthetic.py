"""Small synthetic images for tests: regular textures, with planted defects and their masks."""

from __future__ import annotations

import numpy as np


def texture(seed: int, size: int = 160) -> np.ndarray:
    """A woven-looking periodic texture with sensor noise: ``[size, size, 3]`` uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 2)
    weave = 0.5 + 0.25 * np.sin(2 * np.pi * x / 8 + phase[0]) * np.sin(2 * np.pi * y / 8 + phase[1])
    base = np.stack([weave * 200, weave * 170 + 20, weave * 120 + 40], axis=-1)
    base += rng.normal(0, 6, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def plant_defect(image: np.ndarray, seed: int, radius: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """A dark scratch-like blob at a random place -> (image, bool mask)."""
    rng = np.random.default_rng(1000 + seed)
    size = image.shape[0]
    cy, cx = rng.integers(radius + 8, size - radius - 8, 2)
    y, x = np.mgrid[0:size, 0:size]
    mask = ((y - cy) / radius) ** 2 + ((x - cx) / (radius * 0.6)) ** 2 <= 1.0
    out = image.copy()
    out[mask] = (np.array([60, 30, 20]) + rng.normal(0, 8, (mask.sum(), 3))).clip(0, 255).astype(np.uint8)
    return out, mask


def oriented_texture(seed: int, size: int = 160, angle: float = 0.5, period: float = 10.0,
                     spread: float = 0.35) -> np.ndarray:
    """Streaky noise like a brushed or woven surface: ``[size, size, 3]`` uint8.

    White noise band-passed around one spatial frequency (``period`` pixels, direction ``angle`` in
    radians; ``spread`` is the relative bandwidth), so every draw is a new sample of the same texture.
    A global defect is the same texture at another period or angle.
    """
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    # frequency along the streaks' normal; the bump sits at +-f0 in that direction
    f0 = 1.0 / period
    along = fx * np.cos(angle) + fy * np.sin(angle)
    across = -fx * np.sin(angle) + fy * np.cos(angle)
    bump = np.exp(-0.5 * ((np.abs(along) - f0) / (spread * f0)) ** 2 - 0.5 * (across / (0.6 * spread * f0)) ** 2)
    field = np.fft.ifft2(np.fft.fft2(rng.normal(0, 1, (size, size))) * bump).real
    field = (field - field.mean()) / (field.std() + 1e-12)
    grey = 128 + 38 * field + rng.normal(0, 4, (size, size))
    return np.clip(np.repeat(grey[..., None], 3, axis=2), 0, 255).astype(np.uint8)


def plant_speckle(image: np.ndarray, seed: int, radius: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A small patch of pixel speckle (a local defect on a texture) -> (image, bool mask)."""
    rng = np.random.default_rng(2000 + seed)
    size = image.shape[0]
    cy, cx = rng.integers(radius + 4, size - radius - 4, 2)
    y, x = np.mgrid[0:size, 0:size]
    mask = (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2
    out = image.copy()
    out[mask] = rng.choice([30, 230], size=(int(mask.sum()), 1)).repeat(3, axis=1).astype(np.uint8)
    return out, mask
