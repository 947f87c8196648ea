"""How an image of any size and aspect ratio becomes square backbone inputs, and how maps go back.

Policies:
- ``squash``: resize the whole image to S x S (the papers' choice; distorts long images).
- ``pad``: pad the short side (edge replication) to a square, then resize; the map is cropped back.
- ``tile``: overlapping square tiles of the short side along the long side; maps are averaged
  where tiles overlap. Keeps full resolution along a long image.

Every policy is a list of *views*: boxes in original pixel coordinates (they may extend past the
image for ``pad``). The same views serve the reference images and the test images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..backbones.base import Preprocessing

POLICIES = ("squash", "pad", "tile")


@dataclass(frozen=True)
class View:
    """A box (x0, y0, x1, y1), exclusive ends, in original coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int


def plan_views(height: int, width: int, policy: str = "squash") -> list[View]:
    """The views that cover an ``height x width`` image under ``policy``."""
    if policy == "squash":
        return [View(0, 0, width, height)]
    if policy == "pad":
        side = max(height, width)
        x0, y0 = -((side - width) // 2), -((side - height) // 2)
        return [View(x0, y0, x0 + side, y0 + side)]
    if policy == "tile":
        side = min(height, width)
        long_side = max(height, width)
        count = math.ceil(long_side / side)
        if count == 1:
            return [View(0, 0, width, height)]
        # Evenly spaced starts so tiles overlap equally and the last one ends at the border.
        starts = np.linspace(0, long_side - side, count).round().astype(int)
        if width >= height:
            return [View(int(s), 0, int(s) + side, height) for s in starts]
        return [View(0, int(s), width, int(s) + side) for s in starts]
    raise ValueError(f"unknown resize policy {policy!r}; choose one of {POLICIES}")


_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def crop_view(image: np.ndarray, view: View) -> np.ndarray:
    """The view's pixels; parts outside the image are filled by edge replication."""
    height, width = image.shape[:2]
    pad_top, pad_left = max(0, -view.y0), max(0, -view.x0)
    pad_bottom, pad_right = max(0, view.y1 - height), max(0, view.x1 - width)
    inner = image[max(0, view.y0): min(height, view.y1), max(0, view.x0): min(width, view.x1)]
    if pad_top or pad_left or pad_bottom or pad_right:
        inner = np.pad(inner, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
    return inner


def to_input(rgb: np.ndarray, size: int, prep: Preprocessing) -> torch.Tensor:
    """``[h, w, 3]`` uint8 -> ``[3, size, size]`` float normalised for the backbone."""
    resized = Image.fromarray(rgb).resize((size, size), _RESAMPLE[prep.resample])
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(prep.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(prep.std, dtype=torch.float32)[:, None, None]
    return (tensor - mean) / std


def image_views(image: np.ndarray, size: int, prep: Preprocessing, policy: str) -> tuple[list[View], torch.Tensor]:
    """``[H, W, 3]`` uint8 -> (views, ``[V, 3, size, size]`` inputs)."""
    views = plan_views(image.shape[0], image.shape[1], policy)
    return views, torch.stack([to_input(crop_view(image, v), size, prep) for v in views])


def merge_views(maps: torch.Tensor, views: list[View], height: int, width: int) -> torch.Tensor:
    """Per-view maps ``[V, S, S]`` -> one ``[height, width]`` map at the original size.

    Overlapping views are averaged; padding outside the image is dropped.
    """
    if len(views) == 1 and views[0] == View(0, 0, width, height):
        return _resize(maps[0], height, width)
    total = torch.zeros(height, width, dtype=maps.dtype, device=maps.device)
    count = torch.zeros(height, width, dtype=maps.dtype, device=maps.device)
    for view_map, view in zip(maps, views):
        full = _resize(view_map, view.y1 - view.y0, view.x1 - view.x0)
        ys, xs = max(0, view.y0), max(0, view.x0)
        ye, xe = min(height, view.y1), min(width, view.x1)
        total[ys:ye, xs:xe] += full[ys - view.y0: ye - view.y0, xs - view.x0: xe - view.x0]
        count[ys:ye, xs:xe] += 1
    return total / count.clamp_min(1)


def _resize(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if grid.shape == (height, width):
        return grid
    return F.interpolate(grid[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
