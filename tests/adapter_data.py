"""Synthetic MVTec-layout trees for adapter training: woven textures with bright planted blobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from synthetic import texture


def blob_defect(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A textured ``[size, size, 3]`` uint8 image with one bright round blob -> (image, bool mask)."""
    rng = np.random.default_rng(seed)
    image = texture(seed, size).copy()
    radius = int(rng.integers(size // 8, size // 5))
    cy, cx = rng.integers(radius + 2, size - radius - 2, 2)
    y, x = np.mgrid[0:size, 0:size]
    mask = (y - cy) ** 2 + (x - cx) ** 2 <= radius * radius
    image[mask] = (np.array([250, 245, 235]) + rng.normal(0, 5, (mask.sum(), 3))).clip(0, 255).astype(np.uint8)
    return image, mask


def write_tree(root: Path, category: str = "widget", size: int = 64, defects: int = 8, goods: int = 2,
               with_masks: bool = True) -> Path:
    """``root/<category>/{train/good, test/good, test/blob, ground_truth/blob}``; returns root.

    Without masks, the test split holds only good images (a set adapters cannot train on).
    """
    base = root / category
    for sub in ("train/good", "test/good"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.fromarray(texture(100 + i, size)).save(base / "train" / "good" / f"{i:03d}.png")
    for i in range(goods):
        Image.fromarray(texture(200 + i, size)).save(base / "test" / "good" / f"{i:03d}.png")
    if with_masks:
        (base / "test" / "blob").mkdir(parents=True, exist_ok=True)
        (base / "ground_truth" / "blob").mkdir(parents=True, exist_ok=True)
        for i in range(defects):
            image, mask = blob_defect(i, size)
            Image.fromarray(image).save(base / "test" / "blob" / f"{i:03d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(base / "ground_truth" / "blob" / f"{i:03d}_mask.png")
    return root
