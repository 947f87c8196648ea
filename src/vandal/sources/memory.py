"""The global memory bank (docs/method.md §5; Multi-Scale Memory Comparison's global bank).

Every view of every reference (and its augmented views) is banked per tap and neighbourhood scale
(or, with ``memory.coreset``, a greedy k-centre coreset of them: many references stay fast); a
test view's map is, per tap, its tokens' nearest cosine distance to the bank averaged over scales,
upsampled to the input and summed over taps.

Held out for calibration: with two or more references, reference i against the rows of the others
(a row selection on the one bank); with one, each token against the rows that do not come from near
its own place (:mod:`vandal.memory.held_out`): on a texture another part of the image supplies the
match, on an object a unique part finds none, which keeps the level high rather than wrong.

Textures (the plan judged the references one): each tap's distances are weighted by the inverse of
their spread over the references' held-out tokens (normalised to a mean weight of 1), so the map
sums each tap in units of its own normal variation. The coarse tap's distances vary about twice as
much on a texture (simulated textile, stride 16 vs 8: std 0.067 vs 0.033) and, summed raw, drown
the fine tap's answer to a small defect: local-defect AUROC 0.940 -> 0.951 at k = 1 and 0.949 ->
0.963 at k = 4 (``benchmarks/bench_textures.py``, seeds 0 and 1). Objects keep the plain sum.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..memory.augment import Transform
from ..memory.background import masked_grids
from ..memory.bank import BankSet
from ..memory.graph import BankMap
from ..memory.held_out import leave_neighbourhood_out_distance, neighbourhood_mask, token_sources
from ..memory.maps import bank_key, memory_tokens, sum_over_taps, tap_distances, top_mean
from .base import GraphTerms, HoldOut, NotExportableError, ScoreSource, SourceScore

# One reference: its rows within this distance of a token's own place (normalised units, 2 = the
# side) are left out, about a 3 x 3 neighbourhood of the stride-16 grid at 320 px.
PLACE_RADIUS = 0.2
# A memory of more reference views than this without a coreset gets a warning: the exact search grows
# with the bank (measured by benchmarks/bench_references.py; figures in docs/performance.md).
LARGE_MEMORY_VIEWS = 64
SPREAD_REFERENCES = 4  # textures: references whose held-out distances measure each tap's spread
SPREAD_FLOOR = 1e-6  # a tap's held-out distances spread less than this (identical references): no weights


class MemorySource(ScoreSource):
    name = "memory"
    space = "views"

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        self.neighbourhood = tuple(config.memory.neighbourhood)
        self.banks = BankSet(config.memory.coreset)
        self.transforms: list[Transform] | None = None  # the first reference's views, for one-reference hold-out
        self._near: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.texture = config.memory.texture == "on"  # the plan's decision (ViewPlan.apply)
        self.top_fraction = config.memory.top_fraction
        # A tail mean of the patch distances replaces the map maximum as the image score (AnomalyDINO).
        self.map_in_image_score = self.top_fraction is None
        self.tap_weights: list[float] | None = None  # textures: 1 / each tap's held-out spread (mean 1)
        # Textures: identity taps of the first references, kept until SPREAD_REFERENCES have been measured.
        self._spread_taps: list[list[torch.Tensor]] = []
        self._spread_open = True  # False once the weights are final (or loaded)

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
        if self.texture and self._spread_open and len(self._spread_taps) < SPREAD_REFERENCES:
            self._spread_taps.append(reference.item.output.taps)

    def finish(self) -> bool:
        self.banks.finish()
        # References added later (add_references) refine the weights as a fit on all of them would,
        # until SPREAD_REFERENCES have been measured; then the weights are final and the taps let go.
        if self._spread_open and self._spread_taps and len(self._spread_taps[0]) >= 2:
            self.tap_weights = self._spread_weights()
        if len(self._spread_taps) >= SPREAD_REFERENCES:
            self._spread_open, self._spread_taps = False, []
        views = sum(self.banks.units)
        if self.banks.coreset is None and views > LARGE_MEMORY_VIEWS:
            warnings.warn(f"the memory holds {views} reference views ({len(self.banks)} references with their "
                          "augmented views), and every test token is compared with all of them: predict slows in "
                          "proportion. Keep a coreset with --coreset 16 (Python: coreset=16), which scores about as well "
                          "at a fraction of the time",
                          stacklevel=2)
        return bool(self.banks.banks)

    def _spread_weights(self) -> list[float] | None:
        """Per tap, 1 / the spread (std) of the first references' held-out token distances, normalised
        to a mean of 1; None when a reference cannot be held out or the references are identical."""
        per_tap: list[list[torch.Tensor]] = [[] for _ in self._spread_taps[0]]
        for index, taps in enumerate(self._spread_taps):
            banks = self.banks.without(index)
            if banks is not None:
                grids = tap_distances(taps, banks, self.neighbourhood)
            elif self._traced(taps[0].shape[0]):
                grids = self._held_out_place_grids(taps)
            else:
                return None
            for values, grid in zip(per_tap, grids, strict=True):
                values.append(grid.reshape(-1).float())
        spreads = [float(torch.cat(values).std()) for values in per_tap]
        if min(spreads) < SPREAD_FLOOR:
            return None
        inverse = [1.0 / spread for spread in spreads]
        return [value * len(inverse) / sum(inverse) for value in inverse]

    def _answer(self, grids: list[torch.Tensor], taps: list[torch.Tensor]) -> SourceScore:
        """Per-tap distance grids ``[V, h_t, w_t]`` of views with ``taps`` -> the map ``[V, S, S]`` and,
        with ``memory.top_fraction``, the image score: per tap the mean of the highest fraction of the
        patch distances of all views (at least one patch, as AnomalyDINO's ``mean_top1p``), summed.
        ``memory.mask_background`` first zeroes the background patches (:mod:`vandal.memory.background`)."""
        if self.config.memory.mask_background:
            grids = masked_grids(grids, taps[-1])
        maps = sum_over_taps(grids, self.embedder.size, self.tap_weights)
        if self.top_fraction is None:
            return SourceScore(maps)
        weights = self.tap_weights or [1.0] * len(grids)
        return SourceScore(maps, image_score=sum(w * top_mean(g, self.top_fraction) for w, g in zip(weights, grids)))

    def score(self, item) -> SourceScore:
        taps = item.output.taps
        return self._answer(tap_distances(taps, self.banks.banks, self.neighbourhood), taps)

    def score_left_out(self, index: int, item) -> SourceScore:
        banks = self.banks.without(index)
        if banks is not None:
            return self._answer(tap_distances(item.output.taps, banks, self.neighbourhood), item.output.taps)
        if self.hold_out_alone(item) != "places":
            raise ValueError("leave-one-out needs at least two references")
        return self._answer(self._held_out_place_grids(item.output.taps), item.output.taps)

    def hold_out_alone(self, item) -> HoldOut:
        """``"places"`` for one reference whose rows trace back to places (a coreset's kept rows too, when
        built in this process) and an image of one view (not tiles); else ``"none"``."""
        return "places" if self._traced(len(item.views)) else "none"

    def graph_terms(self) -> GraphTerms:
        memory = self.config.memory
        if memory.mask_background:
            raise NotExportableError("ONNX export does not cover background masking (memory.mask_background: a PCA "
                                     "per image); refit without it to export, or keep the torch bundle")
        if memory.top_fraction is not None:
            raise NotExportableError("ONNX export scores images by the map maximum; this detector scores them by the "
                                     "mean of the highest patch distances (memory.top_fraction, e.g. the anomaly-dino "
                                     "preset): refit with --set memory.top_fraction=none to export, or keep the torch "
                                     "bundle")
        return GraphTerms(map=BankMap(self.banks.banks, self.neighbourhood, self.embedder.size, self.tap_weights))

    def _traced(self, views: int) -> bool:
        traced = self.banks.coreset is None or set(self.banks.origins) == set(self.banks.banks)
        return len(self.banks) == 1 and self.transforms is not None and views == 1 and traced

    def _held_out_place_grids(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per tap, one view's distances ``[1, h, w]`` to the one reference's rows from elsewhere."""
        tokens = memory_tokens(taps, self.neighbourhood)
        grids = []
        for i in range(len(taps)):
            per_scale = []
            for r in self.neighbourhood:
                key = bank_key(i, r)
                _, h, w, c = tokens[key].shape
                rows = self.banks.banks[key].features
                if key not in self._near:
                    where = torch.cat([token_sources(t, h, w).reshape(-1, 2) for t in self.transforms or []])
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
        return grids

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.banks.state_dict()

    def meta(self) -> dict:
        meta: dict[str, object] = {"reference_units": list(self.banks.units)}
        if self.banks.coreset is not None:  # which reference each kept row came from (leave-one-out)
            meta["reference_rows"] = {key: list(rows) for key, rows in self.banks.rows.items()}
        if self.tap_weights is not None:
            meta["tap_weights"] = list(self.tap_weights)
        return meta

    def load_state_dict(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        self.banks.load(state, meta.get("reference_units", []), self.embedder.device, meta.get("reference_rows"))
        weights = meta.get("tap_weights")
        taps = len(self.embedder.backbone.spec.tap_dims)
        if weights is not None and (not isinstance(weights, list) or len(weights) != taps or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= taps + 1e-6 for w in weights)):
            # normalised to a mean of 1, so each lies in (0, taps]
            raise ValueError(f"field 'tap_weights' must list {taps} positive numbers of mean 1, got {weights!r}")
        self.tap_weights = None if weights is None else [float(w) for w in weights]
        self._spread_open = False  # the references' taps are not saved: a loaded detector keeps its weights

    def expected_state(self, meta: dict) -> dict[str, tuple[int | None, ...]]:
        dims = self.embedder.backbone.spec.tap_dims
        return {bank_key(i, r): (None, dims[i]) for i in range(len(dims)) for r in self.neighbourhood}
