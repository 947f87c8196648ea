"""APRIL-GAN's prompt ensemble (docs/method.md §2): 7 normal and 5 abnormal states x 35 templates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # keep this module importable without the backbones
    from .backbones.base import Backbone

NORMAL_STATES: tuple[str, ...] = (
    "{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
    "{} without damage",
)
ABNORMAL_STATES: tuple[str, ...] = (
    "damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage",
)
TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a low resolution photo of the {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a bright photo of a {}.", "a dark photo of the {}.",
    "a photo of my {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
    "a good photo of the {}.", "a photo of one {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "a low resolution photo of a {}.", "a photo of a large {}.",
    "a blurry photo of a {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a photo of the small {}.", "a photo of the large {}.", "a black and white photo of a {}.",
    "a dark photo of a {}.", "a photo of a cool {}.", "a photo of a small {}.",
    "there is a {} in the scene.", "there is the {} in the scene.", "this is a {} in the scene.",
    "this is the {} in the scene.", "this is one {} in the scene.",
)


def _fill(states: tuple[str, ...], name: str) -> list[str]:
    # State-major order, as the reference code builds its sentences.
    return [template.format(state.format(name)) for state in states for template in TEMPLATES]


def prompt_ensemble(class_name: str, humanize: bool = False) -> tuple[list[str], list[str]]:
    """(normal prompts, abnormal prompts): 7*35 and 5*35 sentences.

    The reference code uses the raw folder name (``metal_nut``); ``humanize`` writes ``metal nut``.
    """
    name = class_name.replace("_", " ") if humanize else class_name
    return _fill(NORMAL_STATES, name), _fill(ABNORMAL_STATES, name)


def text_features(backbone: Backbone, class_name: str, humanize: bool = False) -> torch.Tensor:
    """``T`` of shape ``[2, D]``: row 0 normal, row 1 abnormal.

    Each prompt embedding is L2-normalised, averaged within its group, and re-normalised.
    """
    normal, abnormal = prompt_ensemble(class_name, humanize=humanize)
    with torch.no_grad():  # T is a constant, even while adapters train against it
        embeddings = F.normalize(backbone.encode_text(normal + abnormal).float(), dim=-1)
    groups = (embeddings[: len(normal)].mean(0), embeddings[len(normal):].mean(0))
    return F.normalize(torch.stack(groups), dim=-1)
