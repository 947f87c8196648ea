"""The global memory bank (METHOD section 5; Multi-Scale Memory Comparison's global bank).

Every view of every reference (and its augmented views) is banked per tap and neighbourhood scale
(or, with ``memory.coreset``, a greedy k-centre coreset of them: many references stay fast); a
test view's map is, per tap, its tokens' nearest cosine distance to the bank averaged over scales,
upsampled to the input and summed over taps.

Held out for calibration: with two or more references, reference i against the rows of the others
(a row selection on the one bank); with one, each token against the rows that do not come from near
its own place (:mod:`vandal.memory.held_out`): on a texture another part of the image supplies the
match, on an object a unique part finds none, which keeps the level high rather than wrong.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..memory.augment import Transform
from ..memory.bank import BankSet
from ..memory.held_out import leave_neighbourhood_out_distance, neighbourhood_mask, token_sources
from ..memory.maps import bank_key, memory_map, memory_tokens, sum_over_taps
from .base import ScoreSource, SourceScore

# One reference: its rows within this distance of a token's own place (normalised units, 2 = the
# side) are left out, about a 3 x 3 neighbourhood of the stride-16 grid at 320 px.
PLACE_RADIUS = 0.2
# A memory of more reference views than this without a coreset gets a warning: the exact search grows
# with the bank (benchmarks/bench_references.py, bottle: 200 augmented references, 2,200 views, predict
# 5.1 s per image against 0.13 s with --coreset 16, pixel AUROC 0.9864 against 0.9862).
LARGE_MEMORY_VIEWS = 64


class MemorySource(ScoreSource):
    name = "memory"
    space = "views"

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        self.neighbourhood = tuple(config.memory.neighbourhood)
        self.banks = BankSet(config.memory.coreset)
        self.transforms: list[Transform] | None = None  # the first reference's views, for one-reference hold-out
        self._near: dict[str, torch.Tensor] = {}

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        return has_references

    @property
    def reference_count(self) -> int:
        return len(self.banks)

    def add(self, reference) -> None:
        if self.transforms is None and reference.view_count == len(reference.transforms):
            self.transforms = list(reference.transforms)  # one view per transform: rows trace back to places
        self.banks.add(memory_tokens(reference.output.taps, self.neighbourhood))

    def finish(self) -> bool:
        self.banks.finish()
        views = sum(self.banks.units)
        if self.banks.coreset is None and views > LARGE_MEMORY_VIEWS:
            warnings.warn(f"the memory holds {views} reference views ({len(self.banks)} references with their "
                          "augmented views), and every test token is compared with all of them: predict slows in "
                          "proportion. Keep a coreset with --coreset 16 (Python: coreset=16; bottle, 200 augmented "
                          "references: 0.13 s instead of 5.1 s per image, the same pixel AUROC within 0.02 pt)",
                          stacklevel=2)
        return bool(self.banks.banks)

    def _map(self, taps: list[torch.Tensor], banks) -> torch.Tensor:
        return memory_map(taps, banks, self.neighbourhood, self.embedder.size)

    def score(self, item) -> SourceScore:
        return SourceScore(self._map(item.output.taps, self.banks.banks))

    def score_left_out(self, index: int, item) -> SourceScore:
        banks = self.banks.without(index)
        if banks is not None:
            return SourceScore(self._map(item.output.taps, banks))
        if not self.can_hold_out_places(item):
            raise ValueError("leave-one-out needs at least two references")
        return SourceScore(self._held_out_places(item.output.taps))

    def can_hold_out_places(self, item) -> bool:
        """One reference whose rows trace back to places (a coreset's kept rows too, when built in this
        process), and an image of one view (not tiles)."""
        traced = self.banks.coreset is None or set(self.banks.origins) == set(self.banks.banks)
        return len(self.banks) == 1 and self.transforms is not None and len(item.views) == 1 and traced

    def _held_out_places(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """One view's map ``[1, S, S]`` against the one reference's rows from elsewhere in the image."""
        tokens = memory_tokens(taps, self.neighbourhood)
        grids = []
        for i in range(len(taps)):
            per_scale = []
            for r in self.neighbourhood:
                key = bank_key(i, r)
                _, h, w, c = tokens[key].shape
                rows = self.banks.banks[key].features
                if key not in self._near:
                    where = torch.cat([token_sources(t, h, w).reshape(-1, 2) for t in self.transforms])
                    if key in self.banks.origins:  # a coreset kept these of the reference's rows
                        where = where[self.banks.origins[key]]
                    here = token_sources(Transform(), h, w).reshape(-1, 2)
                    self._near[key] = (here, where, neighbourhood_mask(here, where, PLACE_RADIUS).to(rows.device))
                here, where, near = self._near[key]
                queries = F.normalize(tokens[key].reshape(-1, c).float(), dim=-1).to(rows.device)
                owner = torch.zeros(len(rows), dtype=torch.long, device=rows.device)
                d = leave_neighbourhood_out_distance(queries, here.to(rows.device), 0, rows, owner,
                                                     where.to(rows.device), PLACE_RADIUS, near)
                per_scale.append(d.reshape(1, h, w))
            grids.append(torch.stack(per_scale).mean(0))
        return sum_over_taps(grids, self.embedder.size)

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
