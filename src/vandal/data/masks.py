"""Ground-truth masks: read as boolean ``[H, W]`` arrays, resized the way the papers resize them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

PathLike = str | os.PathLike


def load_mask(path: PathLike, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Ground-truth mask as bool ``[H, W]``: non-zero pixels are anomalous.

    ``size`` (an int for square, or ``(height, width)``) resizes as the papers do: the 0/1 mask
    bilinearly as float, then ``> 0.5``.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            # "P" keeps palette indices (index 0 = background); alpha is dropped because it is
            # opaque everywhere and would mark every pixel.
            bands = im.getbands()
            if "A" in bands:
                im = im.convert("RGB" if len(bands) == 4 else "L")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read mask {path}: {err}") from err
    mask = np.asarray(arr.any(axis=-1) if arr.ndim == 3 else arr != 0)
    return mask if size is None else resize_mask(mask, size)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """bool ``[h, w]`` -> bool ``[H, W]`` as the papers resize masks: bilinear as 0/1 floats, ``> 0.5``.

    ``size`` is an int for a square, or ``(height, width)``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if mask.shape == (height, width):
        return mask.astype(bool)
    resized = Image.fromarray(mask.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized) > 0.5
