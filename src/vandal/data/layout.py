"""How an image of any size and aspect ratio becomes square backbone inputs, and how maps go back.

Policies:
- ``auto``: decided once per product from the references (:func:`product_policy`): ``tile`` when
  their median long side is at least :data:`TILE_ASPECT` times their short side, else ``squash``, so
  every image of the product is laid out alike. Without references (zero-shot) it is decided per image. Squashing a 500 x 1250 part to a square shrinks it 2.5x more along its
  length than across, and a crack a few pixels wide falls below a token (KolektorSDD, k = 4, seed 0:
  tile raised pixel AUROC 0.927 -> 0.969 and the memory's image AUROC 0.814 -> 0.874;
  ``benchmarks/bench_surfaces.py``); near-square images stay one view.
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
from .lighting import normalise_lighting

POLICIES = ("auto", "squash", "pad", "tile")
TILE_ASPECT = 1.5  # auto: long side / short side from which an image is tiled


@dataclass(frozen=True)
class View:
    """A box (x0, y0, x1, y1), exclusive ends, in original coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int


def product_policy(policy: str, shapes: list[tuple[int, int]]) -> str:
    """``auto`` resolved for a whole product from its references' ``(height, width)``: ``tile`` when
    their median aspect (long / short side) is >= :data:`TILE_ASPECT`, else ``squash``. Any other
    policy, or no references, is returned as it is."""
    if policy != "auto" or not shapes:
        return policy
    aspects = sorted(max(h, w) / max(1, min(h, w)) for h, w in shapes)
    return "tile" if aspects[len(aspects) // 2] >= TILE_ASPECT else "squash"


def plan_views(height: int, width: int, policy: str = "squash") -> list[View]:
    """The views that cover an ``height x width`` image under ``policy``."""
    if policy == "auto":
        policy = "tile" if max(height, width) >= TILE_ASPECT * min(height, width) else "squash"
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


_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST}


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


def image_views(image: np.ndarray, size: int, prep: Preprocessing, policy: str,
                lighting: tuple[float, float] | None = None) -> tuple[list[View], torch.Tensor]:
    """``[H, W, 3]`` uint8 -> (views, ``[V, 3, size, size]`` inputs); ``lighting``: the product's grey-level
    (mean, std) the image is first brought to (:func:`~vandal.data.lighting.normalise_lighting`)."""
    if lighting is not None:
        image = normalise_lighting(image, lighting)
    views = plan_views(image.shape[0], image.shape[1], policy)
    return views, torch.stack([to_input(crop_view(image, v), size, prep) for v in views])


def merge_views(maps: torch.Tensor, views: list[View], height: int, width: int) -> torch.Tensor:
    """Per-view maps ``[V, S, S]`` -> one ``[height, width]`` map at the original size.

    Overlapping views are averaged; padding outside the image is dropped. Memory: the output
    (4 bytes a pixel) plus at most one tile; a padded view is upsampled only where it meets the image.
    """
    if len(views) == 1:
        return _resize_window(maps[0], views[0], height, width)
    total = torch.zeros(height, width, dtype=maps.dtype, device=maps.device)
    # Views (tiles) run along one axis, so the overlap count is a function of that axis alone.
    count_y = torch.zeros(height, 1, dtype=maps.dtype, device=maps.device)
    count_x = torch.zeros(1, width, dtype=maps.dtype, device=maps.device)
    for view_map, view in zip(maps, views, strict=True):
        ys, xs = max(0, view.y0), max(0, view.x0)
        ye, xe = min(height, view.y1), min(width, view.x1)
        total[ys:ye, xs:xe] += _resize_window(view_map, view, height, width)
        count_y[ys:ye] += 1
        count_x[:, xs:xe] += 1
    tiled_along_x = bool((count_y == len(views)).all())
    return total.div_((count_x if tiled_along_x else count_y).clamp_min(1))


def _resize(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if grid.shape == (height, width):
        return grid
    return F.interpolate(grid[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def _source_index(size_in: int, size_out: int, start: int, stop: int, device) -> tuple[torch.Tensor, ...]:
    """PyTorch's bilinear (align_corners=False) source indices and weights for outputs start..stop-1."""
    scale = torch.tensor(size_in, dtype=torch.float32) / size_out  # a float32 scale, as ATen's
    # scale * (i + 0.5) - 0.5 rounded once to float32 (ATen's fused multiply-add): exact in float64 first.
    source = (scale.double() * (torch.arange(start, stop, dtype=torch.float64) + 0.5) - 0.5).float().clamp_min(0)
    low = source.floor().long().clamp_max(size_in - 1)
    weight = (source - low).clamp(0, 1)
    high = (low + 1).clamp_max(size_in - 1)
    return low.to(device), high.to(device), (1 - weight).to(device), weight.to(device)


def _resize_window(grid: torch.Tensor, view: View, height: int, width: int) -> torch.Tensor:
    """``grid`` ``[S, S]`` upsampled bilinearly to the view's size, only the part inside the image.

    A view inside the image is one ``F.interpolate``; a padded one (larger than the image) is
    evaluated on the image's window only, with F.interpolate's indices and weights (equal to it
    up to float rounding), so padding never costs memory.
    """
    view_h, view_w = view.y1 - view.y0, view.x1 - view.x0
    ys, xs = max(0, view.y0) - view.y0, max(0, view.x0) - view.x0
    ye, xe = min(height, view.y1) - view.y0, min(width, view.x1) - view.x0
    if (ys, xs, ye, xe) == (0, 0, view_h, view_w):
        return _resize(grid, view_h, view_w)
    rows = _source_index(grid.shape[0], view_h, ys, ye, grid.device)
    cols = _source_index(grid.shape[1], view_w, xs, xe, grid.device)
    out = torch.empty(ye - ys, xe - xs, dtype=grid.dtype, device=grid.device)
    step = max(1, (1 << 18) // max(1, xe - xs))  # rows per band: temporaries of ~1 MB
    for top in range(0, ye - ys, step):
        band = slice(top, top + step)
        upper = grid[rows[0][band]]  # [b, S] source rows above and below each output row
        lower = grid[rows[1][band]]
        upper = upper[:, cols[0]] * cols[2] + upper[:, cols[1]] * cols[3]
        lower = lower[:, cols[0]] * cols[2] + lower[:, cols[1]] * cols[3]
        out[band] = upper * rows[2][band, None] + lower * rows[3][band, None]
    return out
