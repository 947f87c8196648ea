"""Zero-shot mutual comparison (Multi-Scale Memory Comparison): text-free and reference-free.

``objects``: every object of a test image against the other objects of the same image (an object
unlike its siblings is anomalous). ``batch``: every test image against the other test images of one
predict call: **transductive**, a score depends on the rest of the batch. With no normal data to
calibrate on, the decision level is a heuristic raw distance per tap.
"""

from __future__ import annotations

import torch

from ..data.layout import merge_views
from ..memory.individual import paste_object_maps
from ..scoring.mutual import mutual_batch_maps, mutual_object_maps
from .base import FixedLevels, ScoreSource, SourceScore
from .objects import smoothed

# On the synthetic multi-object scenes (EfficientNet, taps 8 and 16) normal objects' maxima stay below
# ~0.25 per tap of nearest cosine distance to their siblings, defects go above. Documented heuristic.
MUTUAL_THRESHOLD_PER_TAP = 0.3


class _Mutual(ScoreSource):
    space = "image"
    mode: str

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        if config.mutual.mode != cls.mode:
            return False
        if has_references:
            raise ValueError("mutual comparison is the reference-free mode: call fit() with no images, "
                             "or drop mutual to use the references")
        return True

    def fixed_levels(self) -> FixedLevels:
        level = MUTUAL_THRESHOLD_PER_TAP * len(self.embedder.backbone.spec.taps)
        return FixedLevels(image=0.0, pixel=level, method=f"mutual-{self.mode} (heuristic)")


class MutualObjectsSource(_Mutual):
    name = "mutual-objects"
    option = "mutual.mode (--mutual objects)"
    mode = "objects"
    uses_objects = True

    def score(self, item) -> SourceScore:
        objects = item.objects.crops
        if not objects:
            return SourceScore(torch.zeros(item.height, item.width, device=self.embedder.device))
        # Aligned crops: siblings are also keyed turned by 180 degrees (queries stay as they are).
        turned = item.turned_object_output.taps if self.embedder.align else None
        maps = mutual_object_maps(item.object_output.taps, self.embedder.size, self.config.memory.neighbourhood,
                                  turned)
        maps = smoothed(maps, self.config.post.smoothing_sigma)
        return SourceScore(paste_object_maps(maps, objects, item.height, item.width))


class MutualBatchSource(_Mutual):
    name = "mutual-batch"
    option = "mutual.mode (--mutual batch)"
    mode = "batch"
    transductive = True

    def score(self, item) -> SourceScore:
        raise ValueError("mutual='batch' scores images against each other: use predict(images) on the whole batch")

    def score_batch(self, items: list) -> list[SourceScore]:
        """TRANSDUCTIVE: each image's views compared with the other images' views of this batch."""
        if len(items) < 2:
            raise ValueError("mutual='batch' compares each image with the other images of the batch: give at least 2")
        counts = [item.inputs.shape[0] for item in items]
        taps = [torch.cat([item.output.taps[t] for item in items]) for t in range(len(items[0].output.taps))]
        index = torch.cat([torch.full((n,), i) for i, n in enumerate(counts)])
        maps = mutual_batch_maps(taps, index, self.embedder.size, self.config.memory.neighbourhood)
        maps = smoothed(maps, self.config.post.smoothing_sigma)
        out = []
        for i, item in enumerate(items):
            own = (index == i).to(maps.device)
            out.append(SourceScore(merge_views(maps[own], item.views, item.height, item.width)))
        return out
