"""Individual memory bank (Multi-Scale Memory Comparison): objects compared with objects.

Scenes that hold several objects (VisA capsules, candles, macaroni) are poorly served by a
whole-image memory: the objects move between captures, so a token's nearest reference may be the
background or another pose. Here every object is segmented, its box (grown by a margin, for
context) is cropped and resized to the backbone input, and the crops' taps form a second memory.
A test object's crop is scored against it and its map pasted back at the object's box.

Pure helpers on arrays and tensors; the :class:`~vandal.detector.Detector` does the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.base import Preprocessing
from ..data.layout import to_input
from ..segmentation import Box, Segmenter, crop_box
from .align import Frame, aligned_crop, object_frame, paste_aligned

CROP_MARGIN = 0.15  # fraction of the object's box added on every side: some context, few neighbours
MIN_OBJECTS = 2  # "auto" turns the individual bank on when every reference holds at least this many
INDIVIDUAL_MODES = ("auto", "on", "off")
FUSIONS = ("sum", "mean")


@dataclass(frozen=True)
class ObjectCrop:
    """One object of an image: its tight box and the larger box that was cropped (both x0, y0, x1, y1);
    with ``frame`` the crop is orientation-normalised (see :mod:`vandal.memory.align`) instead."""

    box: Box
    crop: Box
    frame: Frame | None = None


def find_objects(image: np.ndarray, segmenter: Segmenter, margin: float = CROP_MARGIN,
                 align: bool = False) -> list[ObjectCrop]:
    """``[H, W, 3]`` uint8 -> its objects, largest first (the segmenter's order); ``align`` gives each
    its own frame (major axis horizontal) for orientation-normalised crops."""
    height, width = image.shape[:2]
    out = []
    for obj in segmenter(image):
        x0, y0, x1, y1 = obj.box
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue  # a sliver cannot be resized into a meaningful crop
        frame = object_frame(obj.mask, margin) if align else None
        out.append(ObjectCrop(box=(x0, y0, x1, y1), crop=crop_box(obj.box, margin, (height, width)), frame=frame))
    return out


def crop_object(image: np.ndarray, obj: ObjectCrop) -> np.ndarray:
    """The object's crop ``[h, w, 3]`` uint8: its own frame when it has one, else its crop box."""
    if obj.frame is not None:
        return aligned_crop(image, obj.frame)
    return np.ascontiguousarray(image[obj.crop[1]:obj.crop[3], obj.crop[0]:obj.crop[2]])


def crop_inputs(image: np.ndarray, objects: Sequence[ObjectCrop], size: int, prep: Preprocessing) -> torch.Tensor:
    """The objects' crops as backbone inputs ``[N, 3, size, size]`` (``N`` may be 0)."""
    if not objects:
        return torch.empty(0, 3, size, size)
    return torch.stack([to_input(crop_object(image, o), size, prep) for o in objects])


def paste_object_maps(maps: torch.Tensor, objects: Sequence[ObjectCrop], height: int, width: int) -> torch.Tensor:
    """Per-crop maps ``[N, S, S]`` -> one ``[height, width]`` map; 0 outside every object box.

    Each crop's map is resized to its crop box and only the part over the object's own tight box is
    pasted, so a neighbour peeking into the margin does not paint its (unmatched) pixels here.
    Overlapping objects keep the larger value: an anomaly must not be diluted by a neighbour.
    """
    out = torch.zeros(height, width, dtype=maps.dtype, device=maps.device)
    for crop_map, obj in zip(maps, objects):  # a loop over objects, not patches
        if obj.frame is not None:
            paste_aligned(out, crop_map, obj.frame, obj.box)
            continue
        cx0, cy0, cx1, cy1 = obj.crop
        full = F.interpolate(crop_map[None, None], size=(cy1 - cy0, cx1 - cx0), mode="bilinear",
                             align_corners=False)[0, 0]
        x0, y0, x1, y1 = obj.box
        region = full[y0 - cy0: y1 - cy0, x0 - cx0: x1 - cx0]
        out[y0:y1, x0:x1] = torch.maximum(out[y0:y1, x0:x1], region)
    return out


def use_individual(mode: str, object_counts: Sequence[int], min_objects: int = MIN_OBJECTS) -> bool:
    """Whether the individual bank is used: "on", "off", or "auto" = every reference holds
    ``min_objects`` or more objects (a single-object product gains nothing from it)."""
    if mode not in INDIVIDUAL_MODES:
        raise ValueError(f"individual must be one of {INDIVIDUAL_MODES}, got {mode!r}")
    if mode == "auto":
        return bool(object_counts) and min(object_counts) >= min_objects
    return mode == "on"


def fuse_maps(global_map: torch.Tensor, individual_map: torch.Tensor | None, fusion: str,
              scales: Sequence[float] | None) -> torch.Tensor:
    """Global and individual maps ``[H, W]`` -> the fused map.

    "sum" adds them (the papers' fusion); "mean" averages them after dividing each by its own
    reference-calibrated scale (``scales`` = (global, individual), from the references only), so a
    source with larger raw distances does not dominate.
    """
    if individual_map is None:
        return global_map
    if fusion == "sum":
        return global_map + individual_map
    if fusion == "mean":
        if scales is None:
            raise ValueError("mean fusion needs the per-source scales learned at fit")
        # Average only where an object was scored; elsewhere (background, or no object found) the
        # global map stands alone, so a defect off the objects is not halved.
        covered = individual_map > 0
        normalised = global_map / scales[0]
        return torch.where(covered, 0.5 * (normalised + individual_map / scales[1]), normalised)
    raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
