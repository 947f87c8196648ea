"""APRIL-GAN's prompt ensemble and the text features built from it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vandal.backbones import create_backbone
from vandal.prompts import ABNORMAL_STATES, NORMAL_STATES, TEMPLATES, prompt_ensemble, text_features

from clip_fixtures import TINY_EMBED, make_tiny_clip


def test_ensemble_sizes_and_text():
    assert (len(NORMAL_STATES), len(ABNORMAL_STATES), len(TEMPLATES)) == (7, 5, 35)
    assert len(set(TEMPLATES)) == 35
    normal, abnormal = prompt_ensemble("bottle")
    assert (len(normal), len(abnormal)) == (7 * 35, 5 * 35)
    assert len(set(normal)) == 245 and len(set(abnormal)) == 175
    assert normal[0] == "a bad photo of a bottle."
    assert normal[-1] == "this is one bottle without damage in the scene."
    assert abnormal[0] == "a bad photo of a damaged bottle."
    assert "a photo of a bottle with defect." in abnormal
    assert "there is the unblemished bottle in the scene." in normal
    assert not set(normal) & set(abnormal)


def test_class_name_raw_or_humanized():
    normal, _ = prompt_ensemble("metal_nut")
    assert normal[0] == "a bad photo of a metal_nut."
    normal, abnormal = prompt_ensemble("metal_nut", humanize=True)
    assert normal[0] == "a bad photo of a metal nut."
    assert all("_" not in p for p in normal + abnormal)


class _FakeTextBackbone:
    """encode_text returns fixed random rows, unnormalised, so the averaging is visible."""

    def __init__(self):
        self.table: dict[str, torch.Tensor] = {}
        self.generator = torch.Generator().manual_seed(0)

    def encode_text(self, prompts):
        for p in prompts:
            if p not in self.table:
                self.table[p] = 3 * torch.randn(8, generator=self.generator)
        return torch.stack([self.table[p] for p in prompts])


def test_text_features_normalise_average_renormalise():
    fake = _FakeTextBackbone()
    text = text_features(fake, "bottle")
    normal, abnormal = prompt_ensemble("bottle")
    expected = []
    for group in (normal, abnormal):
        rows = torch.stack([F.normalize(fake.table[p], dim=0) for p in group])
        expected.append(F.normalize(rows.mean(0), dim=0))
    torch.testing.assert_close(text, torch.stack(expected))
    # Averaging unnormalised rows would give another answer: the per-prompt normalisation matters.
    raw = F.normalize(torch.stack([fake.table[p] for p in normal]).mean(0), dim=0)
    assert not torch.allclose(raw, text[0])


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    return create_backbone(make_tiny_clip(tmp_path_factory.mktemp("tiny_clip")))


def test_text_features_with_a_clip_backbone(tiny_backbone):
    text = text_features(tiny_backbone, "metal_nut")
    assert text.shape == (2, TINY_EMBED)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    assert not text.requires_grad
    humane = text_features(tiny_backbone, "metal_nut", humanize=True)
    assert not torch.allclose(text, humane)
