"""APRIL-GAN's per-tap linear adapters: the trainable slot that replaces ``project_taps``.

State-dict keys are ``fc.<i>.weight`` / ``fc.<i>.bias``, the layout of the authors' released
checkpoints (stored under ``trainable_linearlayer``), so those load with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class TapAdapters(nn.Module):
    """One ``nn.Linear(C_n, D)`` (with bias) per tap, applied token-wise."""

    def __init__(self, tap_dims: Sequence[int], embed_dim: int):
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(int(c), int(embed_dim)) for c in tap_dims])

    @classmethod
    def from_widths(cls, tap_dims: Sequence[int], embed_dim: int) -> "TapAdapters":
        """Adapters for taps of widths ``tap_dims`` into the ``embed_dim`` joint space."""
        return cls(tap_dims, embed_dim)

    def forward(self, taps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """taps ``[B, h, w, C_n]`` (CLS already dropped) -> ``[B, h, w, D]`` each (not normalised)."""
        if len(taps) != len(self.fc):
            raise ValueError(f"{len(self.fc)} adapters for {len(taps)} taps")
        # Cast to the layer's dtype: taps may come from a half-precision backbone.
        return [fc(tap.to(fc.weight.dtype)) for fc, tap in zip(self.fc, taps)]
