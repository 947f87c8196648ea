"""The global memory bank as a traceable module: what the memory source adds to an exported graph.

The banks become buffers (initializers of the ONNX graph) and the map is computed by the same
:func:`~vandal.memory.maps.memory_map` the torch detector runs, with bank blocks sized for a whole
symbolic batch of views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .bank import MemoryBank
from .maps import memory_map

# Bank rows per similarity block in the graph: the query side is the whole batch (its size is
# symbolic), so peak memory is batch x tokens per view x GRAPH_BANK_BLOCK x 4 bytes (26 MB per view
# for the 40 x 40 tap of EfficientNet-Lite2 at 320 px), however large the bank.
GRAPH_BANK_BLOCK = 4096


class BankMap(nn.Module):
    """taps ``T x [B, h, w, C]`` -> the memory map ``[B, size, size]`` against fixed banks (as buffers)."""

    def __init__(self, banks: Mapping[str, MemoryBank], neighbourhood: Sequence[int], size: int,
                 tap_weights: Sequence[float] | None = None):
        super().__init__()
        self.neighbourhood = tuple(neighbourhood)
        self.size = size
        self.tap_weights = None if tap_weights is None else tuple(tap_weights)
        self.keys = list(banks)
        for index, key in enumerate(self.keys):
            self.register_buffer(f"bank{index}", banks[key].features.detach().float().cpu().contiguous())

    def banks(self) -> dict[str, MemoryBank]:
        """The registered banks as the memory source holds them, searched with the graph's blocks."""
        return {key: MemoryBank(getattr(self, f"bank{index}"), blocks=(None, GRAPH_BANK_BLOCK))
                for index, key in enumerate(self.keys)}

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        return memory_map(taps, self.banks(), self.neighbourhood, self.size, self.tap_weights)
