"""Orientation-normalised object crops: each object turned so its major axis lies horizontal.

An axis-aligned box of an object lying at 60 degrees shows the backbone a different picture than
the box of the same object lying flat, so a normal object in an unusual pose looks "unlike" its
siblings (mutual comparison) or the reference objects (individual bank). Here the object's
principal axis (second moments of its mask) defines a frame: u along the major axis, v across it,
both centred on the mask's centroid. The crop is the object's extent in that frame grown by the
usual margin, sampled straight from the image (reflection padding where it leaves the image).

The axis has no direction, so an aligned crop may still be upside down (180 degrees): callers add
the 180-degree turn of each crop (``turn_half``) as extra keys, not as extra queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Extent = tuple[float, float, float, float]  # (u0, v0, u1, v1) in the object's frame, pixels


@dataclass(frozen=True)
class Frame:
    """An object's own frame: centroid (x, y pixel centres), major-axis angle (radians, image
    coordinates, y down), its mask's tight extent and the cropped (margin-grown) extent."""

    cx: float
    cy: float
    angle: float
    tight: Extent
    crop: Extent


def object_frame(mask: np.ndarray, margin: float) -> Frame:
    """``[H, W]`` bool mask -> its frame; the crop grows the tight extent by ``margin`` of each side,
    as the axis-aligned crops do."""
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    dx, dy = xs - cx, ys - cy
    # Orientation of the second-moment ellipse: the direction of largest spread.
    angle = 0.5 * math.atan2(2.0 * float((dx * dy).mean()), float((dx * dx).mean() - (dy * dy).mean()))
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    # +-0.5: a pixel covers half a pixel either side of its centre.
    u0, u1, v0, v1 = float(u.min()) - 0.5, float(u.max()) + 0.5, float(v.min()) - 0.5, float(v.max()) + 0.5
    mu, mv = (u1 - u0) * margin, (v1 - v0) * margin
    return Frame(cx, cy, angle, (u0, v0, u1, v1), (u0 - mu, v0 - mv, u1 + mu, v1 + mv))


def _to_image(frame: Frame, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = math.cos(frame.angle), math.sin(frame.angle)
    return frame.cx + u * cos - v * sin, frame.cy + u * sin + v * cos


def aligned_crop(image: np.ndarray, frame: Frame) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> the object's crop in its own frame, ``[h, w, 3]`` uint8 at the image's
    own scale (the backbone resize happens later, exactly as for axis-aligned crops)."""
    height, width = image.shape[:2]
    u0, v0, u1, v1 = frame.crop
    w, h = max(2, round(u1 - u0)), max(2, round(v1 - v0))
    u = u0 + (torch.arange(w, dtype=torch.float32) + 0.5) * (u1 - u0) / w
    v = v0 + (torch.arange(h, dtype=torch.float32) + 0.5) * (v1 - v0) / h
    x, y = _to_image(frame, u[None, :], v[:, None])
    # grid_sample's align_corners=False puts -1 at the left edge of pixel 0, i.e. x = -0.5.
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)[None]
    tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float()
    out = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())


def turn_half(inputs: torch.Tensor) -> torch.Tensor:
    """Crops ``[N, C, S, S]`` turned by 180 degrees (h-flip + v-flip): the other direction of the axis."""
    return inputs.flip(-2, -1)


def paste_aligned(out: torch.Tensor, crop_map: torch.Tensor, frame: Frame, box: tuple[int, int, int, int]) -> None:
    """Writes one crop's map ``[S, S]`` (in the object's frame) back into ``out`` ``[H, W]`` in place,
    over the pixels of the object's box that lie within its tight extent; keeps the larger value."""
    x0, y0, x1, y1 = box
    ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float32, device=out.device),
                            torch.arange(x0, x1, dtype=torch.float32, device=out.device), indexing="ij")
    dx, dy = xs - frame.cx, ys - frame.cy
    cos, sin = math.cos(frame.angle), math.sin(frame.angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    u0, v0, u1, v1 = frame.crop
    grid = torch.stack([2 * (u - u0) / (u1 - u0) - 1, 2 * (v - v0) / (v1 - v0) - 1], dim=-1)[None]
    region = F.grid_sample(crop_map[None, None].float(), grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[0, 0].to(out.dtype)
    # Only the object's own extent: a neighbour peeking into the margin does not paint its pixels here.
    tu0, tv0, tu1, tv1 = frame.tight
    inside = (u >= tu0) & (u <= tu1) & (v >= tv0) & (v <= tv1)
    region = torch.where(inside, region, torch.zeros_like(region))
    out[y0:y1, x0:x1] = torch.maximum(out[y0:y1, x0:x1], region)
