import pytest
import torch

from vandal.backbones import REGISTRY, create_backbone, resolve_kind
from vandal.backbones.base import BackboneOutput


def test_efficientnet_contract_real_weights():
    backbone = create_backbone("efficientnet-lite2", image_size=128, taps=(4, 8, 16, 32))
    assert not backbone.has_text and backbone.spec.embed_dim is None
    assert backbone.spec.preprocessing.mean == (0.5, 0.5, 0.5)  # inputs in [-1, 1]
    assert all(not p.requires_grad for p in backbone.parameters()) and not backbone.training
    out = backbone(torch.zeros(2, 3, 128, 128))
    assert isinstance(out, BackboneOutput) and out.global_embedding is None
    for grid, stride, width in zip(out.taps, (4, 8, 16, 32), backbone.spec.tap_dims):
        assert grid.shape == (2, 128 // stride, 128 // stride, width)
    # ImageNet weights really loaded: the first conv is not at its random initialisation scale.
    first = next(backbone.parameters())
    assert float(first.abs().mean()) > 0.05


def test_efficientnet_misuse():
    with pytest.raises(ValueError, match="taps are strides"):
        create_backbone("efficientnet-lite2", taps=(5,))
    with pytest.raises(ValueError, match="multiple of 32"):
        create_backbone("efficientnet-lite2", image_size=100)
    backbone = create_backbone("efficientnet-lite2", image_size=64)
    with pytest.raises(ValueError, match="64x64"):
        backbone(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        backbone(torch.zeros(3, 64, 64))
    with pytest.raises(TypeError, match="no text encoder"):
        backbone.encode_text(["a photo"])


def test_registry_resolution():
    assert set(REGISTRY) >= {"efficientnet-lite2", "clip"}
    assert resolve_kind("openai/clip-vit-large-patch14-336") == "clip"
    with pytest.raises(ValueError, match="unknown backbone"):
        resolve_kind("not-a-backbone")
