"""The individual memory bank (Multi-Scale Memory Comparison): objects compared with objects.

Every reference object is segmented, cropped (its own frame when aligned), augmented and banked; a
test image's objects are scored against that bank and their maps pasted back at the original size
(0 outside every object). ``individual="auto"`` keeps the bank only when every reference holds two
or more objects (a single-object product gains nothing from it).
"""

from __future__ import annotations

import torch

from ..memory.bank import BankSet
from ..memory.individual import paste_object_maps, use_individual
from ..memory.maps import bank_key, memory_map, memory_tokens
from ..scoring.smoothing import gaussian_smooth
from .base import ScoreSource, SourceScore


def smoothed(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_smooth(maps, sigma) if sigma > 0 else maps


class ObjectMemorySource(ScoreSource):
    name = "objects"
    option = "objects.individual (--individual)"
    space = "image"
    uses_objects = True

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        self.neighbourhood = tuple(config.memory.neighbourhood)
        self.fusion = config.objects.fusion
        self.banks = BankSet()
        self.object_counts: list[int] = []
        self._with_objects: list[int] = []  # reference index of each banked reference (some have no object)

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        return has_references and config.objects.individual != "off"

    @property
    def reference_count(self) -> int:
        return len(self.object_counts)

    def add(self, reference) -> None:
        out, count = reference.object_output
        self.object_counts.append(count)
        if out is not None:
            self._with_objects.append(len(self.object_counts) - 1)
            self.banks.add(memory_tokens(out.taps, self.neighbourhood))

    def finish(self) -> bool:
        self.banks.finish()
        return bool(self.banks.banks) and use_individual(self.config.objects.individual, self.object_counts)

    def _map(self, item, banks) -> torch.Tensor:
        """Objects of ``item`` scored against ``banks`` -> ``[H, W]``; zeros with no object or no bank."""
        objects = item.objects.crops
        if not objects or banks is None:
            return torch.zeros(item.height, item.width, device=self.embedder.device)
        maps = memory_map(item.object_output.taps, banks, self.neighbourhood, self.embedder.size)
        maps = smoothed(maps, self.config.post.smoothing_sigma)
        return paste_object_maps(maps, objects, item.height, item.width)

    def score(self, item) -> SourceScore:
        return SourceScore(self._map(item, self.banks.banks))

    def score_left_out(self, index: int, item) -> SourceScore:
        # Reference `index` may hold no object: then nothing of it is banked and the bank stays whole.
        if index not in self._with_objects:
            return self.score(item)
        return SourceScore(self._map(item, self.banks.without(self._with_objects.index(index))))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.banks.state_dict()

    def meta(self) -> dict:
        return {"object_counts": list(self.object_counts), "reference_units": list(self.banks.units)}

    def load_state_dict(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        self.object_counts = [int(c) for c in meta.get("object_counts", [])]
        self._with_objects = [i for i, c in enumerate(self.object_counts) if c > 0]
        self.banks.load(state, meta.get("reference_units", []), self.embedder.device)

    def expected_state(self, meta: dict) -> dict[str, tuple[int | None, ...]]:
        dims = self.embedder.backbone.spec.tap_dims
        return {bank_key(i, r): (None, dims[i]) for i in range(len(dims)) for r in self.neighbourhood}
