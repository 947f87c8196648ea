"""Fusing the sources' answers for one image into a raw map and a raw image score (pure maths).

View-space maps (memory, text) are summed per view, smoothed, and merged back to the original size;
image-space maps (object-level sources) join the merged map by their fusion rule ("sum", or "mean"
of reference-normalised maps, see :func:`vandal.memory.individual.fuse_maps`). The raw image score
is the text probability (when a text source answered) plus the fused map's maximum (when any
source that acts through its map answered), as both papers score images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..data.layout import View, merge_views
from ..memory.individual import fuse_maps
from .smoothing import gaussian_smooth

if TYPE_CHECKING:
    from ..sources.base import ScoreSource, SourceScore

TINY = 1e-6


@dataclass
class ScoredImage:
    """One image's answers before fusion.

    view_maps: ``[V, S, S]`` smoothed sum of the view sources. image_maps: ``([H, W], fusion rule)``
    per image-space source. text: the summed image-score parts (None when no source gave one).
    map_in_score: whether the fused map's maximum joins the image score.
    decisions: image-level sources' own decisions (1.0 = their level), by source name.
    exclusive: the decisions alone are the image score.
    """

    views: list[View]
    height: int
    width: int
    view_maps: torch.Tensor
    image_maps: list[tuple[torch.Tensor, str]]
    text: float | None
    map_in_score: bool
    decisions: dict[str, float] = field(default_factory=dict)
    exclusive: bool = False


def collect(item, answers: Sequence[tuple[ScoreSource, SourceScore]], size: int, sigma: float) -> ScoredImage:
    """``(source, SourceScore)`` pairs for ``item`` -> a :class:`ScoredImage` (view maps summed, smoothed)."""
    view_maps = None
    image_maps: list[tuple[torch.Tensor, str]] = []
    parts: list[float] = []
    decisions: dict[str, float] = {}
    for source, answer in answers:
        if answer.decision is not None:
            decisions[source.name] = answer.decision
        if answer.map is None:
            pass
        elif source.space == "views":
            view_maps = answer.map if view_maps is None else view_maps + answer.map
        else:
            image_maps.append((answer.map, source.fusion))
        if answer.image_score is not None:
            parts.append(answer.image_score)
    if view_maps is None:
        device = image_maps[0][0].device if image_maps else None
        view_maps = torch.zeros(len(item.views), size, size, device=device)
    if sigma > 0:
        view_maps = gaussian_smooth(view_maps, sigma)
    return ScoredImage(item.views, item.height, item.width, view_maps, image_maps, sum(parts) if parts else None,
                       any(source.map_in_image_score for source, _ in answers), decisions,
                       any(source.exclusive for source, _ in answers))


def fuse(scored: ScoredImage, scales: Sequence[float] | None, grid: bool = False) -> tuple[torch.Tensor, float]:
    """-> (raw map ``[H, W]``, raw image score). Scored on the merged map, what the user sees: with
    pad/tile the per-view maxima include padding or tile overlaps that the merged map does not.

    grid: the map on the backbone's input grid ``[S, S]`` instead (one view covering the whole
    image, i.e. ``resize="squash"``), as the APRIL-GAN reference scores; image-space maps are
    resized onto it.
    """
    if grid:
        whole = View(0, 0, scored.width, scored.height)
        if scored.views != [whole]:
            raise ValueError("maps on the input grid need resize='squash' (one view of the whole image)")
        raw = scored.view_maps[0]
        size = tuple(raw.shape)
        image_maps = [(F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0], rule)
                      for m, rule in scored.image_maps]
    else:
        raw = merge_views(scored.view_maps, scored.views, scored.height, scored.width)
        image_maps = scored.image_maps
    for image_map, rule in image_maps:
        raw = fuse_maps(raw, image_map, rule, scales)
    text = scored.text or 0.0
    return raw, (text + float(raw.amax()) if scored.map_in_score else text)


def fusion_scales(scored: Sequence[ScoredImage]) -> tuple[float, float]:
    """Mean fusion: each source's scale is its largest value over the calibration images (references
    only): (view maps, image-space maps)."""
    view_max = max(float(s.view_maps.amax()) for s in scored)
    image_max = max((float(m.amax()) for s in scored for m, _ in s.image_maps), default=0.0)
    return max(view_max, TINY), max(image_max, TINY)
