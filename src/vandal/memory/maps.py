"""From per-tap distance grids to one memory map (METHOD section 5)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F


def sum_over_taps(distances: Iterable[torch.Tensor], size: int) -> torch.Tensor:
    """Per-tap distance grids ``[N, h_t, w_t]`` -> ``[N, size, size]``: each grid upsampled bilinearly
    (align_corners=True, as the reference code) to the input size, then summed over taps."""
    total = None
    for grid in distances:
        up = F.interpolate(grid[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        total = up if total is None else total + up
    if total is None:
        raise ValueError("sum_over_taps needs at least one tap")
    return total
