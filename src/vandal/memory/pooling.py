"""Neighbourhood scales for memory comparison: tap tokens averaged over r x r patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pool_neighbourhood(grid: torch.Tensor, r: int) -> torch.Tensor:
    """``[B, h, w, C]`` -> ``[B, h, w, C]``, each token the mean of its r x r neighbourhood.

    Borders average only the tokens that exist (no zero padding), so edges are not darkened.
    """
    if r < 1 or r % 2 == 0:
        raise ValueError(f"neighbourhood size must be odd and >= 1, got {r}")
    if r == 1:
        return grid
    channels_first = grid.permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(channels_first, r, stride=1, padding=r // 2, count_include_pad=False)
    return pooled.permute(0, 2, 3, 1)
