"""Backbones behind one contract, chosen by name from a registry (a plain dict of builders)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..config import DEFAULT_CLIP
from .base import Backbone, BackboneOutput, BackboneSpec, Preprocessing

DEFAULT_BACKBONE = "efficientnet-lite2"


def _build_efficientnet(name: str, image_size: int | None, taps: tuple[int, ...] | None, offline: bool = False,
                        **kw) -> Backbone:
    from .efficientnet import DEFAULT_IMAGE_SIZE, EfficientNetLite2

    if kw:  # the weights ship in a package: offline is always true, and nothing else is configurable
        raise ValueError(f"{', '.join(sorted(kw))} only apply to CLIP backbones, not {name!r}")
    return EfficientNetLite2(image_size=image_size or DEFAULT_IMAGE_SIZE, taps=taps)


def _build_clip(name: str, image_size: int | None, taps: tuple[int, ...] | None, **kw) -> Backbone:
    from .clip import CLIPBackbone

    return CLIPBackbone(name, image_size=image_size, taps=taps, **kw)


def _build_dinov2(name: str, image_size: int | None, taps: tuple[int, ...] | None, **kw) -> Backbone:
    from .dinov2 import DINOv2Backbone

    if "hidden_act" in kw or "pos_antialias" in kw:
        raise ValueError(f"hidden_act and pos_antialias only apply to CLIP backbones, not DINOv2 {name!r}")
    return DINOv2Backbone(name, image_size=image_size, taps=taps, **kw)


# kind -> builder(name, image_size, taps, **kw)
REGISTRY: dict[str, Callable[..., Backbone]] = {
    "efficientnet-lite2": _build_efficientnet,
    "clip": _build_clip,
    "dinov2": _build_dinov2,
}

# A local directory (or a Hub id already in the local cache) names its family in config.json.
MODEL_TYPES: dict[str, str] = {"clip": "clip", "dinov2": "dinov2", "dinov2_with_registers": "dinov2"}
# Hub ids of the known families, matched on the lower-cased id when no config is at hand.
HUB_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^openai/clip-vit-", "clip"),
    (r"^[^/]+/clip-vit-", "clip"),
    (r"^facebook/dinov2-", "dinov2"),
    (r"^[^/]+/dinov2-", "dinov2"),
)


def resolve_kind(name: str) -> str:
    """Which registry family a backbone name belongs to.

    A registry key is itself; a local directory (or a Hub id in the local cache) by its config.json
    ``model_type``; any other Hugging Face id by :data:`HUB_PATTERNS` (``openai/clip-vit-*``,
    ``facebook/dinov2-*``...). Never touches the network.
    """
    if name in REGISTRY:
        return name
    from .hf import model_type_of

    model_type = model_type_of(name)
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise ValueError(f"backbone {name!r} is a {model_type!r} model; supported model types: "
                             f"{', '.join(sorted(MODEL_TYPES))}")
        return MODEL_TYPES[model_type]
    if Path(name).expanduser().is_dir():
        raise ValueError(f"{name!r} is not a model directory: it has no config.json (save the model with "
                         "save_pretrained)")
    for pattern, kind in HUB_PATTERNS:
        if re.match(pattern, name.lower()):
            return kind
    raise ValueError(
        f"unknown backbone {name!r}: use one of {sorted(REGISTRY)}, a Hugging Face id of a known family "
        f"(e.g. {DEFAULT_CLIP} or facebook/dinov2-small) or a local directory written by save_pretrained "
        f"(config.json model_type one of {', '.join(sorted(MODEL_TYPES))})"
    )


def create_backbone(name: str = DEFAULT_BACKBONE, image_size: int | None = None,
                    taps: tuple[int, ...] | None = None, device: str | None = None, **kw) -> Backbone:
    """Build a frozen backbone in eval mode on ``device``."""
    kind = resolve_kind(name)
    backbone = REGISTRY[kind](name, image_size, tuple(taps) if taps else None, **kw)
    backbone.eval().requires_grad_(False)
    if device:
        backbone.to(device)
    return backbone


__all__ = [
    "Backbone", "BackboneOutput", "BackboneSpec", "Preprocessing", "REGISTRY",
    "MODEL_TYPES", "HUB_PATTERNS", "DEFAULT_BACKBONE", "DEFAULT_CLIP", "create_backbone", "resolve_kind",
]
