"""The segmenter contract and the pure mask helpers every segmenter shares.

A segmenter turns one RGB image into a list of object masks; the individual memory bank crops each
object's box (grown by a margin) and scores it against the reference objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_SAM_ID = "facebook/sam-vit-base"

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), pixel indices, x1 and y1 exclusive


@dataclass(eq=False)  # arrays have no single truth value: compare by identity
class ObjectMask:
    """One segmented object.

    mask: (H, W) bool, True on the object. box: (x0, y0, x1, y1) with exclusive ends, the tight box
    of `mask`. score: confidence, higher is better, about [0, 1] (SAM's predicted IoU; for the
    classical segmenter the fraction of the mask that passed the colour threshold).
    """

    mask: np.ndarray
    box: Box
    score: float

    @property
    def area(self) -> int:
        """Number of object pixels."""
        return int(self.mask.sum())

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float = 1.0) -> ObjectMask:
        """Build an ObjectMask from a (H, W) mask, its box computed here so the two always agree."""
        mask = np.asarray(mask, dtype=bool)
        return cls(mask=mask, box=mask_box(mask), score=float(score))


@runtime_checkable
class Segmenter(Protocol):
    """Anything that maps an image (H, W, 3) uint8 to its objects, largest first."""

    def __call__(self, image: np.ndarray) -> list[ObjectMask]: ...


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Array-like image -> (H, W, 3) uint8: grey is repeated, alpha dropped, other dtypes refused
    (a float image's range is ambiguous)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


def mask_box(mask: np.ndarray) -> Box:
    """Tight box (x0, y0, x1, y1), ends exclusive, of a (H, W) bool mask; (0, 0, 0, 0) if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def box_intersection(a: Box, b: Box) -> Box | None:
    """Overlap of two boxes, or None when they do not overlap."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks; 0.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 0.0
    return float(np.logical_and(a, b).sum() / union)


def _object_iou(a: ObjectMask, b: ObjectMask, area_a: int, area_b: int) -> float:
    # Only the boxes' overlap can hold shared pixels: counting there keeps deduplication cheap on
    # megapixel images with hundreds of candidate masks.
    inter_box = box_intersection(a.box, b.box)
    if inter_box is None:
        return 0.0
    x0, y0, x1, y1 = inter_box
    inter = int(np.logical_and(a.mask[y0:y1, x0:x1], b.mask[y0:y1, x0:x1]).sum())
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def deduplicate(masks: Sequence[ObjectMask], iou_threshold: float = 0.7) -> list[ObjectMask]:
    """Greedy mask-IoU suppression: keep the higher-scoring mask of any pair with IoU > threshold.

    Returns the kept masks in descending score order (ties keep input order).
    """
    order = sorted(range(len(masks)), key=lambda i: -masks[i].score)
    areas = [masks[i].area for i in range(len(masks))]
    kept: list[int] = []
    for i in order:
        if all(_object_iou(masks[i], masks[j], areas[i], areas[j]) <= iou_threshold for j in kept):
            kept.append(i)
    return [masks[i] for i in kept]


def filter_masks(
    masks: Sequence[ObjectMask],
    image_area: int,
    min_area_frac: float = 0.001,
    max_area_frac: float = 0.9,
) -> list[ObjectMask]:
    """Drop specks (area < min_area_frac * image_area) and background-sized masks (area >
    max_area_frac * image_area). Empty masks always go. Order is preserved."""
    lo, hi = max(min_area_frac * image_area, 1), max_area_frac * image_area
    return [m for m in masks if lo <= m.area <= hi]


def drop_nested(masks: Sequence[ObjectMask], containment: float = 0.9) -> list[ObjectMask]:
    """Drop every mask lying (at least `containment` of its area) inside a larger kept mask.

    SAM answers each point with a whole, a part and a sub-part; the individual memory bank wants
    whole objects, so parts go. Returns the kept masks sorted by area, largest first.
    """
    areas = [m.area for m in masks]
    order = sorted(range(len(masks)), key=lambda i: -areas[i])
    kept: list[int] = []
    for i in order:
        inside = False
        for j in kept:
            inter_box = box_intersection(masks[i].box, masks[j].box)
            if inter_box is None:
                continue
            x0, y0, x1, y1 = inter_box
            inter = np.logical_and(masks[i].mask[y0:y1, x0:x1], masks[j].mask[y0:y1, x0:x1]).sum()
            if inter >= containment * areas[i]:
                inside = True
                break
        if not inside:
            kept.append(i)
    return [masks[i] for i in kept]


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression on (N, 4) boxes (x0, y0, x1, y1) with (N,) scores.

    Written here because torchvision's `batched_nms`, which transformers' mask-generation
    post-processing calls, is not installable in this project. Returns kept indices, best first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.clip(hi - lo, 0, None).prod(axis=1)
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def crop_box(box: Box, margin_frac: float, image_hw: tuple[int, int]) -> Box:
    """Grow `box` by `margin_frac` of its own width / height on every side, clipped to the image.

    image_hw: (H, W). The margin gives the backbone some context around the object, as the
    individual memory bank crops objects with their surroundings.
    """
    x0, y0, x1, y1 = box
    h, w = image_hw
    mx = int(round((x1 - x0) * margin_frac))
    my = int(round((y1 - y0) * margin_frac))
    return (max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my))
