"""The one backbone contract (docs/method.md §1).

Every backbone turns a normalised batch ``[B, 3, S, S]`` into a :class:`BackboneOutput`:
``taps`` (patch-token grids from several depths, each ``[B, h, w, C]``) and, for backbones
that live in a joint image-text space, ``global_embedding`` (``[B, D]``, L2-normalised).
Text backbones also implement :meth:`Backbone.encode_text` and :meth:`Backbone.project_taps`.

Preprocessing travels with the weights: each backbone carries its ``mean``/``std``/resample
mode so nobody pairs weights with the wrong normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BackboneOutput:
    """What one forward pass gives.

    taps: one ``[B, h, w, C]`` float tensor per tap, in the backbone's tap order.
    global_embedding: ``[B, D]`` L2-normalised, or ``None`` for vision-only backbones.
    """

    taps: list[torch.Tensor]
    global_embedding: torch.Tensor | None = None


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB in [0, 1] becomes the backbone's input."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"  # PIL resample name used to resize to the input size

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "resample": self.resample}


@dataclass
class BackboneSpec:
    """What a saved detector records about its backbone, enough to rebuild and to check it."""

    name: str  # registry name, Hugging Face id or local path
    kind: str  # registry family: "efficientnet-lite2", "clip", ...
    image_size: int
    taps: tuple[int, ...]
    tap_dims: tuple[int, ...]
    embed_dim: int | None
    preprocessing: Preprocessing
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "image_size": self.image_size,
            "taps": list(self.taps),
            "tap_dims": list(self.tap_dims),
            "embed_dim": self.embed_dim,
            "preprocessing": self.preprocessing.to_dict(),
            "extra": dict(self.extra),
        }


class Backbone(nn.Module):
    """Base class: a frozen feature extractor with a fixed tap set.

    Subclasses set ``spec`` in ``__init__`` and implement :meth:`forward`. Text backbones set
    ``has_text = True`` and implement :meth:`encode_text` and :meth:`project_taps`.
    """

    has_text: bool = False
    spec: BackboneSpec

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:  # pragma: no cover - abstract
        """pixels ``[B, 3, S, S]`` normalised -> :class:`BackboneOutput`."""
        raise NotImplementedError

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> ``[N, D]`` L2-normalised embeddings in the joint space."""
        raise TypeError(
            f"backbone {self.spec.name!r} has no text encoder: zero-shot text scoring needs a CLIP "
            "backbone (e.g. --backbone openai/clip-vit-large-patch14-336)"
        )

    def project_taps(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Training-free map of tap tokens ``[B, h, w, C]`` into the joint space ``[B, h, w, D]``.

        This is the slot a trained adapter replaces (APRIL-GAN's per-tap linear layers).
        """
        raise TypeError(f"backbone {self.spec.name!r} has no joint image-text space")


def check_pixels(pixels: torch.Tensor, image_size: int) -> None:
    """Fail early on a batch of the wrong shape."""
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"expected pixels of shape [B, 3, H, W], got {tuple(pixels.shape)}")
    if pixels.shape[-2:] != (image_size, image_size):
        raise ValueError(
            f"expected {image_size}x{image_size} input, got {pixels.shape[-2]}x{pixels.shape[-1]}"
        )
