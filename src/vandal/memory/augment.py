"""Augmented views of a reference shot (Multi-Scale Memory Comparison's memory augmentation).

Each shot also enters the memory as rotations by +-pi/16 and +-pi/8 (reflection padding),
translations by +-10% of the side and horizontal / vertical flips: 11 views a shot.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Transform:
    """An affine view: rotation (radians), translation (fractions of the side), flips."""

    angle: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    flip_h: bool = False
    flip_v: bool = False

    def name(self) -> str:
        parts = []
        if self.angle:
            parts.append(f"rot{math.degrees(self.angle):+.1f}")
        if self.shift_x or self.shift_y:
            parts.append(f"shift{self.shift_x:+.2f},{self.shift_y:+.2f}")
        if self.flip_h:
            parts.append("hflip")
        if self.flip_v:
            parts.append("vflip")
        return "_".join(parts) or "identity"


def paper_transforms(rotations: bool = True, translations: bool = True, flips: bool = True) -> list[Transform]:
    """The views docs/method.md §5 lists, identity first (11 with everything on)."""
    views = [Transform()]
    if rotations:
        views += [Transform(angle=a) for a in (math.pi / 16, -math.pi / 16, math.pi / 8, -math.pi / 8)]
    if translations:
        views += [Transform(shift_x=0.1), Transform(shift_x=-0.1), Transform(shift_y=0.1), Transform(shift_y=-0.1)]
    if flips:
        views += [Transform(flip_h=True), Transform(flip_v=True)]
    return views


def rotation_transforms(step_degrees: int = 45) -> list[Transform]:
    """AnomalyDINO's rotations of a reference: every ``step_degrees`` but 0 (45: seven views)."""
    return [Transform(angle=math.radians(a)) for a in range(step_degrees, 360, step_degrees)]


def calibration_transforms() -> list[Transform]:
    """Small perturbations that a normal part may show between captures (used to calibrate k = 1)."""
    small = math.pi / 48
    return [Transform(angle=small), Transform(angle=-small), Transform(shift_x=0.03, shift_y=0.03),
            Transform(shift_x=-0.03, shift_y=-0.03)]


WARP_BAND_BYTES = 1 << 22  # sampling grids are built in bands of rows of about this size


def _base_coordinates(n: int) -> torch.Tensor:
    """Normalised pixel centres along one axis, exactly as ``F.affine_grid(align_corners=False)``."""
    if n <= 1:
        return torch.zeros(max(n, 1))
    return torch.linspace(-1, 1, n, dtype=torch.float32) * (n - 1) / n


def _warp(image: np.ndarray, theta: torch.Tensor) -> np.ndarray:
    """``[H, W, 3]`` uint8 warped by the affine ``theta`` ``[1, 2, 3]`` (bilinear, reflection padding).

    Equal to ``grid_sample(image, affine_grid(theta))`` on the whole image, but one channel at a time
    and over bands of output rows: about 5 bytes per pixel of working memory instead of ~40 (a float
    copy of the image, a full sampling grid, the float output and its rounding).
    """
    height, width = image.shape[:2]
    xs, ys = _base_coordinates(width), _base_coordinates(height)
    rows = max(1, WARP_BAND_BYTES // (width * 8))
    out = np.empty_like(image)
    for channel in range(image.shape[2]):
        plane = torch.from_numpy(np.ascontiguousarray(image[..., channel])).float()[None, None]
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            base = torch.empty(bottom - top, width, 3)
            base[..., 0], base[..., 1], base[..., 2] = xs, ys[top:bottom, None], 1.0
            # The same product affine_grid computes, so the grid is bit-identical to the whole image's.
            grid = base.view(1, -1, 3).bmm(theta.transpose(1, 2)).view(1, bottom - top, width, 2)
            warped = F.grid_sample(plane, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            out[top:bottom, :, channel] = warped[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()
        del plane  # before the next channel's float copy exists, not after
    return out


def apply_transform(image: np.ndarray, transform: Transform) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> the transformed view, same size, reflection padding."""
    if transform == Transform():
        return image
    out = image
    if transform.flip_h:
        out = out[:, ::-1]
    if transform.flip_v:
        out = out[::-1]
    if transform.angle or transform.shift_x or transform.shift_y:
        height, width = out.shape[:2]
        cos, sin = math.cos(transform.angle), math.sin(transform.angle)
        # affine_grid works in normalised [-1, 1] coordinates; correct the rotation for aspect.
        aspect = width / height
        theta = torch.tensor([[cos, -sin / aspect, -2 * transform.shift_x],
                              [sin * aspect, cos, -2 * transform.shift_y]], dtype=torch.float32)[None]
        return _warp(out, theta)
    return np.ascontiguousarray(out)


def augment(image: np.ndarray, transforms: list[Transform]) -> Iterator[np.ndarray]:
    """One image -> one view per transform, made lazily (one full-size view at a time)."""
    for transform in transforms:
        yield apply_transform(image, transform)
