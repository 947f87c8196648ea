"""Backbones behind one contract, chosen by name from a registry (a plain dict of builders)."""

from __future__ import annotations

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


# kind -> builder(name, image_size, taps, **kw)
REGISTRY: dict[str, Callable[..., Backbone]] = {
    "efficientnet-lite2": _build_efficientnet,
    "clip": _build_clip,
}


def resolve_kind(name: str) -> str:
    """Which registry family a backbone name belongs to.

    A registry key is itself; anything else (a Hugging Face id such as
    ``openai/clip-vit-large-patch14-336`` or a local directory holding a CLIP config) is CLIP.
    """
    if name in REGISTRY:
        return name
    if "clip" in name.lower() or Path(name).is_dir():
        return "clip"
    raise ValueError(
        f"unknown backbone {name!r}: use one of {sorted(REGISTRY)}, a Hugging Face CLIP id "
        f"(e.g. {DEFAULT_CLIP}) or a local directory holding a CLIP model"
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
    "DEFAULT_BACKBONE", "DEFAULT_CLIP", "create_backbone", "resolve_kind",
]
