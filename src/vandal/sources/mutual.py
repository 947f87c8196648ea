"""Zero-shot mutual comparison (Multi-Scale Memory Comparison): text-free and reference-free.

``objects``: every object of a test image against the other objects of the same image (an object
unlike its siblings is anomalous). ``batch``: every test image against the other test images of one
predict call: **transductive**, a score depends on the rest of the batch. With no normal data to
calibrate on, the decision level is a heuristic raw distance per tap.

The batch form also runs MuSc (``mutual.scoring = "musc"``, the ``musc`` preset): its scoring maths
lives in :mod:`vandal.scoring.mutual`; here the call is split into parts of at most
``mutual.batch_cap`` images and, with ``mutual.rescore``, the image scores are re-scored over the
whole call (RsCIN) from each image's global features.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..data.layout import merge_views
from ..memory.individual import paste_object_maps
from ..scoring.mutual import mutual_batch_maps, mutual_object_maps, rescore
from .base import FixedLevels, ScoreSource, SourceScore
from .objects import smoothed

# On the synthetic multi-object scenes (EfficientNet, taps 8 and 16) normal objects' maxima stay below
# ~0.25 per tap of nearest cosine distance to their siblings, defects go above. Documented heuristic.
MUTUAL_THRESHOLD_PER_TAP = 0.3
SPLIT_SEED = 0  # parts of a call larger than mutual.batch_cap are drawn with this seed: reproducible


def split_batch(count: int, cap: int | None) -> list[list[int]]:
    """Indices ``0..count-1`` in ``ceil(count / cap)`` random parts of near-equal size (one part when
    ``cap`` is None or not exceeded). Random, not consecutive: inputs come sorted by defect type, and
    a part of only defective images would find every defect normal."""
    if cap is None or count <= cap:
        return [list(range(count))]
    parts = -(-count // cap)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return [sorted(order[i::parts]) for i in range(parts)]


def global_features(item) -> torch.Tensor:
    """One image's global feature ``[D]`` for re-scoring: the mean of its views' global embeddings, or
    (vision-only backbones) of its deepest tap's tokens."""
    out = item.output
    if out.global_embedding is not None:
        return out.global_embedding.float().mean(0)
    return out.taps[-1].float().mean(dim=(0, 1, 2))


class TooFewImagesError(ValueError):
    """A transductive call with fewer than two images to compare."""


class _Mutual(ScoreSource):
    space = "image"
    mode: str

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        if config.mutual.mode != cls.mode:
            return False
        if has_references:
            raise ValueError("mutual comparison is the reference-free mode: fit it with no normal images (`vandal "
                             "predict --zero-shot --mutual batch ...` or `--preset musc`; in Python `fit()`), or drop "
                             "mutual to use the references")
        return True

    def fixed_levels(self) -> FixedLevels:
        per_tap = MUTUAL_THRESHOLD_PER_TAP
        if self.config.mutual.scoring == "musc":  # the same cosine level as a Euclidean distance of unit vectors
            per_tap = math.sqrt(2.0 * MUTUAL_THRESHOLD_PER_TAP)
        level = per_tap * len(self.embedder.backbone.spec.taps)
        # Re-scored image scores stay in map-maximum units, so the map's level applies to them too.
        image = level if not self.map_in_image_score else 0.0
        return FixedLevels(image=image, pixel=level, method=f"mutual-{self.mode} (heuristic)")


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

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        # Re-scored image scores replace the map maximum (RsCIN), passed as the image-score part.
        self.map_in_image_score = config.mutual.rescore is None

    def score_batch(self, items: list, progress: bool = False) -> list[SourceScore]:
        """TRANSDUCTIVE: each image's views compared with the other images' views of its part of the call
        (the all-pairs comparisons, minutes for a hundred images on a CPU, under a progress bar)."""
        if len(items) < 2:
            raise TooFewImagesError(f"mutual='batch' compares each image with the other images of the batch: give at "
                                    f"least 2 readable, distinct images (got {len(items)} after unreadable files were "
                                    "skipped and repeated paths dropped)")
        mutual = self.config.mutual
        neighbourhood = self.config.memory.neighbourhood
        maps: list[torch.Tensor] = [torch.empty(0)] * len(items)
        parts = split_batch(len(items), mutual.batch_cap)
        with tqdm(total=len(parts) * len(items[0].output.taps) * len(neighbourhood), unit="comparison",
                  desc=f"predict: comparing {len(items)} images with each other", disable=not progress) as bar:
            for part in parts:
                chosen = [items[i] for i in part]
                counts = [item.inputs.shape[0] for item in chosen]
                taps = [torch.cat([item.output.taps[t] for item in chosen]) for t in range(len(chosen[0].output.taps))]
                index = torch.cat([torch.full((n,), i) for i, n in enumerate(counts)])
                views = mutual_batch_maps(taps, index, self.embedder.size, neighbourhood, mutual.scoring,
                                          mutual.lowest, step=bar.update)
                views = smoothed(views, self.config.post.smoothing_sigma)
                for j, (i, item) in enumerate(zip(part, chosen)):
                    own = (index == j).to(views.device)
                    maps[i] = merge_views(views[own], item.views, item.height, item.width)
        if mutual.rescore is None:
            return [SourceScore(m) for m in maps]
        maxima = torch.stack([m.amax() for m in maps]).float().cpu()
        features = torch.stack([global_features(item).cpu() for item in items])
        scores = rescore(maxima, features, mutual.rescore)
        return [SourceScore(m, image_score=float(s)) for m, s in zip(maps, scores)]
