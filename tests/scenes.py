"""Synthetic multi-object scenes for tests and benchmarks: two-tone capsules on a plain backdrop.

Each scene holds 3-6 capsules at random positions and rotations; an anomalous scene has exactly one
defective capsule (a dark stain or a missing chunk) and its pixel mask.
"""

from __future__ import annotations

import numpy as np

BACKGROUND = np.array([92, 110, 128], np.float32)
COLOUR_A = np.array([225, 140, 40], np.float32)
COLOUR_B = np.array([235, 232, 220], np.float32)
BAND = np.array([60, 90, 170], np.float32)


def _capsule_frame(size: int, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    return u, v


def _capsule_mask(u: np.ndarray, v: np.ndarray, length: float, width: float) -> np.ndarray:
    half = length / 2 - width / 2
    return (np.clip(np.abs(u) - half, 0, None) ** 2 + v ** 2) <= (width / 2) ** 2


def _positions(rng: np.random.Generator, count: int, size: int, spacing: float, margin: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for _ in range(2000):
        if len(out) == count:
            break
        p = rng.uniform(margin, size - margin, 2)
        if all(np.hypot(*(p - q)) >= spacing for q in out):
            out.append((float(p[0]), float(p[1])))
    return out


def capsule_scene(seed: int, size: int = 256, defect: str | None = None, n_objects: tuple[int, int] = (3, 6),
                  max_angle: float = np.pi) -> tuple[np.ndarray, np.ndarray]:
    """-> (``[size, size, 3]`` uint8 scene, ``[size, size]`` bool defect mask).

    defect: None (normal), "stain" or "chunk"; it lands on one random capsule.
    max_angle: capsules turn by a uniform angle in [-max_angle, max_angle].
    """
    rng = np.random.default_rng(seed)
    length, width = size * 0.25, size * 0.1
    image = np.broadcast_to(BACKGROUND, (size, size, 3)).copy()
    count = int(rng.integers(n_objects[0], n_objects[1] + 1))
    centres = _positions(rng, count, size, spacing=length + 6, margin=length / 2 + 4)
    defective = int(rng.integers(len(centres))) if defect else -1
    mask = np.zeros((size, size), bool)
    for index, (cx, cy) in enumerate(centres):
        angle = float(rng.uniform(-max_angle, max_angle))
        u, v = _capsule_frame(size, cx, cy, angle)
        body = _capsule_mask(u, v, length, width)
        colour = np.where((u < 0)[..., None], COLOUR_A, COLOUR_B)
        colour = np.where((np.abs(u - length / 6) < width * 0.12)[..., None], BAND, colour)
        shade = (1.0 - 0.25 * (v / (width / 2)) ** 2)[..., None]  # a rounded look
        if index == defective:
            along = float(rng.uniform(-length / 4, length / 4))
            if defect == "stain":
                stain = ((u - along) ** 2 + (v - rng.uniform(-2, 2)) ** 2) <= (width * 0.32) ** 2
                colour = np.where(stain[..., None], np.array([70, 40, 25], np.float32), colour)
                mask |= stain & body
            elif defect == "chunk":
                side = float(rng.choice([-1.0, 1.0]))
                chunk = ((u - along) ** 2 + (v - side * width / 2) ** 2) <= (width * 0.42) ** 2
                mask |= chunk & body
                body = body & ~chunk
            else:
                raise ValueError(f"unknown defect {defect!r}")
        image[body] = (colour * shade)[body]
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def scene_set(n_normal: int, n_anomalous: int, seed: int = 0, size: int = 256, max_angle: float = np.pi
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Test scenes: (images, masks, labels); anomalous ones alternate stain / chunk defects."""
    images, masks, labels = [], [], []
    for i in range(n_normal + n_anomalous):
        defect = None if i < n_normal else ("stain", "chunk")[i % 2]
        image, mask = capsule_scene(seed * 1000 + 500 + i, size, defect, max_angle=max_angle)
        images.append(image)
        masks.append(mask)
        labels.append(int(defect is not None))
    return images, masks, labels
