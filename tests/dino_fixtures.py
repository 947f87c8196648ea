"""Tiny randomly initialised DINOv2 models (with and without registers) saved the way Hugging Face
checkpoints are, for offline tests through the real loading path (:func:`vandal.backbones.create_backbone`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Deliberately not the ImageNet values, so a test can tell that they were read from the directory.
TINY_MEAN = (0.4, 0.5, 0.6)
TINY_STD = (0.3, 0.2, 0.1)
TINY_PATCH = 14
TINY_DEPTH = 4
TINY_WIDTH = 24
TINY_REGISTERS = 2
TINY_IMAGE_SIZE = 56  # a 4 x 4 grid of 14-pixel patches


def make_tiny_dinov2(dirpath: str | Path, registers: bool = False, seed: int = 0) -> str:
    """Write a tiny random ``Dinov2Model`` (``Dinov2WithRegistersModel`` with ``registers``) and its
    ``preprocessor_config.json`` to ``dirpath``: patch 14, width 24, 4 blocks."""
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    dirpath = Path(dirpath)
    dirpath.mkdir(parents=True, exist_ok=True)
    common = dict(hidden_size=TINY_WIDTH, num_hidden_layers=TINY_DEPTH, num_attention_heads=2, mlp_ratio=2,
                  patch_size=TINY_PATCH, image_size=TINY_IMAGE_SIZE)
    torch.manual_seed(seed)
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=TINY_REGISTERS, **common))
    else:
        model = Dinov2Model(Dinov2Config(**common))
    with torch.no_grad():  # random position and register tokens: zeros would hide a wrong slice
        for name, param in model.named_parameters():
            if "position_embeddings" in name or "register_tokens" in name or "cls_token" in name:
                param.normal_(0, 1)
    model.save_pretrained(dirpath)
    # What BitImageProcessor writes; resample 3 is PIL's BICUBIC.
    (dirpath / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "BitImageProcessor", "image_mean": list(TINY_MEAN), "image_std": list(TINY_STD),
        "resample": 3, "crop_size": {"height": 224, "width": 224},
    }))
    return str(dirpath)
