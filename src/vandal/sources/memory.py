"""The global memory bank (METHOD section 5; Multi-Scale Memory Comparison's global bank).

Every view of every reference (and its augmented views) is banked per tap and neighbourhood scale
(or, with ``memory.coreset``, a greedy k-centre coreset of them: many references stay fast); a
test view's map is, per tap, its tokens' nearest cosine distance to the bank averaged over scales,
upsampled to the input and summed over taps.
"""

from __future__ import annotations

import torch

from ..memory.bank import BankSet
from ..memory.maps import bank_key, memory_map, memory_tokens
from .base import ScoreSource, SourceScore


class MemorySource(ScoreSource):
    name = "memory"
    space = "views"

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        self.neighbourhood = tuple(config.memory.neighbourhood)
        self.banks = BankSet(config.memory.coreset)

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        return has_references

    @property
    def reference_count(self) -> int:
        return len(self.banks)

    def add(self, reference) -> None:
        self.banks.add(memory_tokens(reference.output.taps, self.neighbourhood))

    def finish(self) -> bool:
        self.banks.finish()
        return bool(self.banks.banks)

    def _map(self, taps: list[torch.Tensor], banks) -> torch.Tensor:
        return memory_map(taps, banks, self.neighbourhood, self.embedder.size)

    def score(self, item) -> SourceScore:
        return SourceScore(self._map(item.output.taps, self.banks.banks))

    def score_left_out(self, index: int, item) -> SourceScore:
        banks = self.banks.without(index)
        if banks is None:
            raise ValueError("leave-one-out needs at least two references")
        return SourceScore(self._map(item.output.taps, banks))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.banks.state_dict()

    def meta(self) -> dict:
        meta = {"reference_units": list(self.banks.units)}
        if self.banks.coreset is not None:  # which reference each kept row came from (leave-one-out)
            meta["reference_rows"] = {key: list(rows) for key, rows in self.banks.rows.items()}
        return meta

    def load_state_dict(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        self.banks.load(state, meta.get("reference_units", []), self.embedder.device, meta.get("reference_rows"))

    def expected_state(self, meta: dict) -> dict[str, tuple[int | None, ...]]:
        dims = self.embedder.backbone.spec.tap_dims
        return {bank_key(i, r): (None, dims[i]) for i in range(len(dims)) for r in self.neighbourhood}
