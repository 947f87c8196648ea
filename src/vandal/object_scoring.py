"""The detector's object-level sources: the individual memory bank and zero-shot mutual comparison.

A mixin of :class:`~vandal.detector.Detector` (kept apart so each file stays one idea): it embeds
object crops, banks the reference objects, and scores a test image's objects, either against the
reference objects (individual bank) or against each other (mutual). Maps come back at the image's
original size, 0 outside every object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.layout import View, merge_views, to_input
from .memory.align import turn_half
from .memory.augment import Transform, augment
from .memory.bank import MemoryBank
from .memory.individual import (ObjectCrop, crop_inputs, crop_object, fuse_maps, find_objects, paste_object_maps,
                                use_individual)
from .scoring.mutual import mutual_batch_maps, mutual_object_maps
from .scoring.text import gaussian_smooth


@dataclass
class SourceMaps:
    """One image's raw maps before fusion: global view maps ``[V, S, S]`` (memory + text), the
    object-level map ``[H, W]`` (individual or mutual; None when off) and the text scores ``[V]``."""

    maps: torch.Tensor
    views: list[View]
    objects: torch.Tensor | None
    text: torch.Tensor | None
    height: int
    width: int


class ObjectScoring:
    """Methods the Detector gains for object-level scoring (needs its backbone_, segmenter_, ...)."""

    def _aligned(self) -> bool:
        """Whether object crops are orientation-normalised (``align_objects``)."""
        return bool(self.align_objects)

    def _objects(self, image: np.ndarray) -> tuple[list[ObjectCrop], torch.Tensor]:
        """Segment -> (objects, crops as inputs ``[N, 3, S, S]``)."""
        objects = find_objects(image, self.segmenter_, align=self._aligned())
        size, prep = self.backbone_.image_size, self.backbone_.preprocessing
        return objects, crop_inputs(image, objects, size, prep)

    def _reference_object_tokens(self, images: list[np.ndarray], transforms: list[Transform]
                                 ) -> tuple[list[dict[str, torch.Tensor] | None], list[int]]:
        """Per reference: its objects' bank tokens (each crop also augmented), or None with no object;
        and the object counts (for the "auto" decision)."""
        tokens, counts = [], []
        size, prep = self.backbone_.image_size, self.backbone_.preprocessing
        for image in tqdm(images, desc="fit: embedding reference objects", unit="img", disable=not self.progress):
            objects = find_objects(image, self.segmenter_, align=self._aligned())
            counts.append(len(objects))
            if not objects:
                tokens.append(None)
                continue
            # Augment each crop, not the scene: the object turns about its own centre, as a part does.
            crops = [crop_object(image, o) for o in objects]
            if self._aligned():  # an aligned axis has no direction: bank both ways round
                crops += [np.ascontiguousarray(crop[::-1, ::-1]) for crop in crops]
            inputs = torch.stack([to_input(view, size, prep) for crop in crops for view in augment(crop, transforms)])
            grids = self._memory_tokens(self._embed(inputs))
            tokens.append({k: v.reshape(-1, v.shape[-1]) for k, v in grids.items()})
        return tokens, counts

    def _fit_individual(self, images: list[np.ndarray], transforms: list[Transform]
                        ) -> list[dict[str, torch.Tensor] | None] | None:
        """Builds ``individual_banks_`` when the mode (and, for "auto", the references) ask for it."""
        self.individual_banks_, self.fusion_scales_ = None, None
        self.object_counts_: list[int] = []
        if self.individual == "off":
            return None
        tokens, self.object_counts_ = self._reference_object_tokens(images, transforms)
        present = [t for t in tokens if t is not None]
        if not present or not use_individual(self.individual, self.object_counts_):
            return None
        self.individual_banks_ = self._banks_from(present)
        return tokens

    def _object_map(self, image: np.ndarray, banks: dict[str, MemoryBank] | None) -> torch.Tensor | None:
        """Individual-bank map (``banks`` given) or mutual sibling map (``mutual="objects"``) at
        ``[H, W]``; None when neither applies."""
        if not banks and self.mutual != "objects":
            return None
        height, width = image.shape[:2]
        objects, inputs = self._objects(image)
        if not objects:
            return torch.zeros(height, width, device=self.device_)
        out = self._embed(inputs)
        if banks:
            maps = self._memory_maps(out, banks)
        else:
            # Aligned crops: siblings are also keyed turned by 180 degrees (queries stay as they are).
            turned = self._embed(turn_half(inputs)).taps if self._aligned() else None
            maps = mutual_object_maps(out.taps, self.backbone_.image_size, self.neighbourhood, turned)
        if self.smoothing_sigma > 0:
            maps = gaussian_smooth(maps, self.smoothing_sigma)
        return paste_object_maps(maps, objects, height, width)

    def _source_maps(self, image: np.ndarray, banks: dict[str, MemoryBank] | None,
                     individual_banks: dict[str, MemoryBank] | None) -> SourceMaps:
        views, inputs = self._prepare(image)
        maps, text = self._view_maps(self._embed(inputs), banks, inputs)
        return SourceMaps(maps, views, self._object_map(image, individual_banks), text, *image.shape[:2])

    def _fuse(self, src: SourceMaps, with_memory: bool) -> tuple[torch.Tensor, float, float]:
        """-> (raw map ``[H, W]``, raw image score, map maximum). Without an object map this is
        exactly the global-only detector; with one, maps are fused at the original size."""
        raw = merge_views(src.maps, src.views, src.height, src.width)
        if src.objects is not None:
            raw = fuse_maps(raw, src.objects, self.fusion if self.mutual is None else "sum", self.fusion_scales_)
        # Scored on the merged map, what the user sees: with pad/tile the per-view maxima include
        # padding or tile overlaps that the merged map does not.
        with_memory = with_memory or src.objects is not None
        return raw, self._raw_image_score(raw, src.text, with_memory), float(raw.amax())

    def _set_fusion_scales(self, sources: list[SourceMaps]) -> None:
        """Mean fusion: each source's scale = its largest value over the calibration maps (references only)."""
        if self.individual_banks_ is None or self.fusion != "mean":
            return
        tiny = 1e-6
        global_max = max(float(s.maps.amax()) for s in sources)
        object_max = max((float(s.objects.amax()) for s in sources if s.objects is not None), default=0.0)
        self.fusion_scales_ = (max(global_max, tiny), max(object_max, tiny))

    def _mutual_batch_sources(self, images: list[np.ndarray]) -> list[SourceMaps]:
        """TRANSDUCTIVE: each image's views compared with the other images' views of this batch."""
        if len(images) < 2:
            raise ValueError("mutual='batch' compares each image with the other images of the batch: give at least 2")
        prepared = [self._prepare(image) for image in images]
        inputs = torch.cat([p[1] for p in prepared])
        index = torch.cat([torch.full((p[1].shape[0],), i) for i, p in enumerate(prepared)])
        out = self._embed(inputs)
        maps = mutual_batch_maps(out.taps, index, self.backbone_.image_size, self.neighbourhood)
        if self.smoothing_sigma > 0:
            maps = gaussian_smooth(maps, self.smoothing_sigma)
        sources = []
        for i, (image, (views, _)) in enumerate(zip(images, prepared)):
            own = index == i
            view_out = type(out)(taps=[t[own] for t in out.taps],
                                 global_embedding=None if out.global_embedding is None else out.global_embedding[own])
            text_maps, text = self._view_maps(view_out, None, inputs[own])
            mutual = merge_views(maps[own.to(maps.device)], views, *image.shape[:2])
            sources.append(SourceMaps(text_maps, views, mutual, text, *image.shape[:2]))
        return sources
