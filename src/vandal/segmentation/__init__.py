"""Object segmenters for the individual memory bank: a registry of builders.

`create_segmenter("classical")` needs no weights; `create_segmenter("sam")` (or an HF id, or a
local directory saved with `save_pretrained`) runs SAM through transformers. The SAM module
(torch + transformers) is only imported when a SAM segmenter is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .base import (
    DEFAULT_SAM_ID,
    Box,
    ObjectMask,
    Segmenter,
    as_rgb,
    box_nms,
    crop_box,
    deduplicate,
    drop_nested,
    filter_masks,
    mask_box,
    mask_iou,
)
from .classical import ClassicalSegmenter

# Short names for the released SAM checkpoints (the papers used SAM; the size is a speed choice).
SAM_ALIASES = {
    "sam": DEFAULT_SAM_ID,
    "sam-vit-base": "facebook/sam-vit-base",
    "sam-vit-large": "facebook/sam-vit-large",
    "sam-vit-huge": "facebook/sam-vit-huge",
}


def _sam(model: str) -> Callable[..., Segmenter]:
    def build(**kw: Any) -> Segmenter:
        from .sam import SamSegmenter

        return SamSegmenter(model=kw.pop("model", model), **kw)

    return build


SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "classical": ClassicalSegmenter,
    **{alias: _sam(hf_id) for alias, hf_id in SAM_ALIASES.items()},
}


def create_segmenter(name: str = "classical", **kw: Any) -> Segmenter:
    """Build a segmenter by registry name ("classical", "sam", "sam-vit-huge", ...), HF id
    ("facebook/sam-vit-base") or local SAM directory; `kw` go to its constructor."""
    if name in SEGMENTERS:
        return SEGMENTERS[name](**kw)
    if os.path.isdir(name) or "/" in name:
        return _sam(name)(**kw)
    raise ValueError(
        f"unknown segmenter {name!r}: use one of {sorted(SEGMENTERS)}, an HF id or a local directory"
    )


def __getattr__(name: str) -> Any:
    # SamSegmenter without importing transformers at package import time.
    if name in ("SamSegmenter", "stability_score"):
        from . import sam

        return getattr(sam, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Box",
    "ClassicalSegmenter",
    "DEFAULT_SAM_ID",
    "ObjectMask",
    "SEGMENTERS",
    "SamSegmenter",
    "Segmenter",
    "as_rgb",
    "box_nms",
    "create_segmenter",
    "crop_box",
    "deduplicate",
    "drop_nested",
    "filter_masks",
    "mask_box",
    "mask_iou",
    "stability_score",
]
