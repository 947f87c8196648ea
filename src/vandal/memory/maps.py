"""From tap grids to one memory map (docs/method.md §5): pooled tokens, banks, per-tap distances summed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .bank import MemoryBank
from .pooling import pool_neighbourhood


def sum_over_taps(distances: Iterable[torch.Tensor], size: int,
                  weights: Sequence[float] | None = None) -> torch.Tensor:
    """Per-tap distance grids ``[N, h_t, w_t]`` -> ``[N, size, size]``: each grid upsampled bilinearly
    (align_corners=True, as the reference code) to the input size, then summed over taps (each times
    its weight, when ``weights`` are given)."""
    total = None
    for i, grid in enumerate(distances):
        up = F.interpolate(grid[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        if weights is not None:
            up = up * weights[i]
        total = up if total is None else total + up
    if total is None:
        raise ValueError("sum_over_taps needs at least one tap")
    return total


def bank_key(tap: int, r: int) -> str:
    """The bank of tap ``tap`` (0-based position in the tap set) at neighbourhood scale ``r``."""
    return f"tap{tap}.r{r}"


def memory_tokens(taps: list[torch.Tensor], neighbourhood: Sequence[int]) -> dict[str, torch.Tensor]:
    """Tap grids ``[N, h, w, C]`` -> pooled grids at every neighbourhood scale, keyed by :func:`bank_key`."""
    return {bank_key(i, r): pool_neighbourhood(grid, r) for i, grid in enumerate(taps) for r in neighbourhood}


def tap_distances(taps: list[torch.Tensor], banks: Mapping[str, MemoryBank],
                  neighbourhood: Sequence[int]) -> list[torch.Tensor]:
    """N inputs' taps -> per tap the nearest distance to its banks, mean over scales: ``[N, h_t, w_t]`` each."""
    tokens = memory_tokens(taps, neighbourhood)
    return [torch.stack([banks[bank_key(i, r)].distance_grid(tokens[bank_key(i, r)]) for r in neighbourhood]).mean(0)
            for i in range(len(taps))]


def memory_map(taps: list[torch.Tensor], banks: Mapping[str, MemoryBank], neighbourhood: Sequence[int],
               size: int, weights: Sequence[float] | None = None) -> torch.Tensor:
    """N inputs' taps -> :func:`tap_distances` upsampled to ``size`` and summed over taps (weighted
    when ``weights`` are given): ``[N, size, size]`` (docs/method.md §5)."""
    return sum_over_taps(tap_distances(taps, banks, neighbourhood), size, weights)


def top_mean(grid: torch.Tensor, fraction: float) -> float:
    """The mean of the highest ``int(fraction * n)`` of a grid's n values (the maximum when that is 0):
    AnomalyDINO's image score ``mean_top1p`` at ``fraction = 0.01``."""
    values = grid.reshape(-1).float()
    k = int(values.numel() * fraction)
    return float(values.max()) if k == 0 else float(values.topk(k).values.mean())
