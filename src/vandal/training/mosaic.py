"""APRIL-GAN's 2x2 mosaic augmentation: four same-class test images (and masks) tiled into one.

The reference code (``combine_img``) picks a defect folder at random, then a file in it, four
times (with replacement), pastes the images in reading order at the first one's size and lets
the usual resize bring the 2x2 canvas to the input size. :func:`pick_members` reproduces the
draw; :func:`mosaic_2x2` the tiling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..data.datasets import Sample, resize_mask


def pick_members(rng: np.random.Generator, by_defect: dict[str, list[int]]) -> tuple[int, ...]:
    """Four indices: each a uniformly drawn defect type (``good`` included), then a sample of it.

    by_defect: defect type -> indices of one class's samples of that type.
    """
    kinds = sorted(k for k, members in by_defect.items() if members)
    if not kinds:
        raise ValueError("a mosaic needs at least one sample of the class")
    out = []
    for _ in range(4):
        members = by_defect[kinds[int(rng.integers(len(kinds)))]]
        out.append(members[int(rng.integers(len(members)))])
    return tuple(out)


def group_by_defect(samples: Sequence[Sample], indices: Sequence[int]) -> dict[str, list[int]]:
    """Defect type -> the given sample indices of that type, in order."""
    groups: dict[str, list[int]] = {}
    for i in indices:
        groups.setdefault(samples[i].defect_type, []).append(i)
    return groups


def mosaic_2x2(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Four ``[h, w, 3]`` uint8 images and bool ``[h, w]`` masks -> ``[2h, 2w, 3]`` and ``[2h, 2w]``.

    Tiles go in reading order (top-left, top-right, bottom-left, bottom-right); every tile is
    brought to the first image's size (bicubic for images, mask rule for masks).
    """
    if len(images) != 4 or len(masks) != 4:
        raise ValueError(f"a 2x2 mosaic needs 4 images and 4 masks, got {len(images)} and {len(masks)}")
    height, width = images[0].shape[:2]
    canvas = np.zeros((2 * height, 2 * width, 3), dtype=np.uint8)
    canvas_mask = np.zeros((2 * height, 2 * width), dtype=bool)
    for i, (image, mask) in enumerate(zip(images, masks)):
        if image.shape[:2] != mask.shape:
            raise ValueError(f"mosaic tile {i}: image {image.shape[:2]} and mask {mask.shape} differ in size")
        if image.shape[:2] != (height, width):
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
            mask = resize_mask(mask, (height, width))
        y, x = (i // 2) * height, (i % 2) * width
        canvas[y:y + height, x:x + width] = image
        canvas_mask[y:y + height, x:x + width] = mask
    return canvas, canvas_mask
