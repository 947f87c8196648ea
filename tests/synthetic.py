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
