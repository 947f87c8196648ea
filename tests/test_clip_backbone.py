"""CLIPBackbone on a tiny random CLIP saved to disk and loaded back through create_backbone."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F

from vandal.backbones import create_backbone
from vandal.backbones.clip import CLIPBackbone, default_image_size, default_taps

from clip_fixtures import TINY_DEPTH, TINY_EMBED, TINY_IMAGE_SIZE, TINY_MEAN, TINY_STD, TINY_WIDTH, make_tiny_clip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def hf_model(tiny_dir):
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(tiny_dir, local_files_only=True).eval()


def _pixels(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_contract_at_a_non_native_size(tiny_dir):
    backbone = create_backbone(tiny_dir, image_size=48)
    assert isinstance(backbone, CLIPBackbone) and backbone.has_text
    with torch.no_grad():
        out = backbone(_pixels(48))
    assert [tuple(t.shape) for t in out.taps] == [(2, 6, 6, TINY_WIDTH)] * TINY_DEPTH
    assert out.global_embedding.shape == (2, TINY_EMBED)
    torch.testing.assert_close(out.global_embedding.norm(dim=-1), torch.ones(2))
    spec = backbone.spec
    assert (spec.name, spec.kind, spec.image_size) == (tiny_dir, "clip", 48)
    assert spec.taps == (1, 2, 3, 4) and spec.tap_dims == (TINY_WIDTH,) * 4
    assert spec.embed_dim == TINY_EMBED and spec.extra["patch_size"] == 8
    assert backbone.grid_size == 6


def test_preprocessing_is_read_from_the_directory(tiny_dir):
    pre = create_backbone(tiny_dir).preprocessing
    assert pre.mean == pytest.approx(TINY_MEAN) and pre.std == pytest.approx(TINY_STD)
    assert pre.resample == "bicubic"


def test_defaults():
    assert default_taps(24) == (6, 12, 18, 24)
    assert default_taps(12) == (3, 6, 9, 12)
    assert default_image_size(336, 14) == 518
    assert default_image_size(224, 14) == 224


def test_default_size_is_native_for_other_models(tiny_dir):
    backbone = create_backbone(tiny_dir)
    assert backbone.image_size == TINY_IMAGE_SIZE and backbone.spec.taps == (1, 2, 3, 4)


def test_frozen_and_eval(tiny_dir):
    backbone = CLIPBackbone(tiny_dir)  # frozen even when built without the registry
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())


def test_taps_are_the_residual_stream_at_requested_blocks(tiny_dir, hf_model):
    # pos_antialias=False makes the position table the one transformers interpolates itself.
    backbone = create_backbone(tiny_dir, image_size=48, taps=(3, 1), pos_antialias=False)
    pixels = _pixels(48)
    with torch.no_grad():
        out = backbone(pixels)
        ref = hf_model.vision_model(pixel_values=pixels, interpolate_pos_encoding=True,
                                    output_hidden_states=True)
        image_features = hf_model.get_image_features(pixel_values=pixels,
                                                     interpolate_pos_encoding=True).pooler_output
    # hidden_states[0] is the embedding output, hidden_states[k] the output of block k.
    for tap, block in zip(out.taps, (3, 1)):
        torch.testing.assert_close(tap, ref.hidden_states[block][:, 1:].reshape(2, 6, 6, -1))
    torch.testing.assert_close(out.global_embedding, F.normalize(image_features, dim=-1))


def test_project_taps_is_post_layernorm_then_projection(tiny_dir, hf_model):
    backbone = create_backbone(tiny_dir, image_size=48, pos_antialias=False)
    pixels = _pixels(48)
    with torch.no_grad():
        out = backbone(pixels)
        projected = backbone.project_taps(out.taps)
        last = hf_model.vision_model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        # The CLS token through the same path is the (unnormalised) global embedding.
        cls = backbone.project_taps([last[:, :1].reshape(2, 1, 1, -1)])[0].reshape(2, -1)
    assert [tuple(p.shape) for p in projected] == [(2, 6, 6, TINY_EMBED)] * TINY_DEPTH
    assert not torch.allclose(projected[-1].norm(dim=-1), torch.ones(2, 6, 6))
    torch.testing.assert_close(F.normalize(cls, dim=-1), out.global_embedding)


def test_position_table_resized_bicubically_once(tiny_dir, hf_model):
    native = hf_model.vision_model.embeddings.position_embedding.weight.detach()  # [1+16, C]
    grid = native[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    for antialias in (True, False):
        backbone = create_backbone(tiny_dir, image_size=56, pos_antialias=antialias)
        expected = F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False,
                                 antialias=antialias).permute(0, 2, 3, 1).reshape(49, -1)
        table = backbone.position_table
        assert table.shape == (50, TINY_WIDTH)
        torch.testing.assert_close(table[0], native[0])
        torch.testing.assert_close(table[1:], expected)
    # Without antialias it is exactly the table transformers interpolates at every forward.
    embeddings = hf_model.vision_model.embeddings
    with torch.no_grad():
        hf_table = embeddings.interpolate_pos_encoding(torch.zeros(1, 50, TINY_WIDTH), 56, 56)[0]
    torch.testing.assert_close(backbone.position_table, hf_table)
    # The two kernels really differ, so the default (antialias, as open_clip) is a choice.
    antialiased = create_backbone(tiny_dir, image_size=56).position_table
    assert not torch.allclose(antialiased, hf_table)


def test_native_size_keeps_the_table(tiny_dir, hf_model):
    backbone = create_backbone(tiny_dir)
    torch.testing.assert_close(backbone.position_table,
                               hf_model.vision_model.embeddings.position_embedding.weight)


def test_encode_text_normalised_and_batched(tiny_dir):
    backbone = create_backbone(tiny_dir)
    prompts = [f"a photo of {i} bottles." if i % 2 else "damaged bottle" for i in range(66)]
    with torch.no_grad():
        embeddings = backbone.encode_text(prompts)
        single = backbone.encode_text([prompts[65]])
    assert embeddings.shape == (66, TINY_EMBED)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(66))
    # Padding within a batch of 64 must not change a prompt's embedding.
    torch.testing.assert_close(embeddings[65], single[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embeddings[0], embeddings[2])
    assert not torch.allclose(embeddings[0], embeddings[1])


def test_bad_tap_index_raises(tiny_dir):
    for taps in ((0, 2), (2, TINY_DEPTH + 1), (2, 2)):
        with pytest.raises(ValueError, match="tap"):
            create_backbone(tiny_dir, taps=taps)


def test_bad_sizes_raise(tiny_dir):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        create_backbone(tiny_dir, image_size=50)
    backbone = create_backbone(tiny_dir, image_size=48)
    with pytest.raises(ValueError, match="48x48"):
        backbone(_pixels(32))


def test_non_clip_directories_raise(tmp_path):
    from transformers import BertConfig

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        create_backbone(str(empty))  # resolution already refuses it
    with pytest.raises(ValueError, match="not a CLIP model directory"):
        CLIPBackbone(str(empty))
    bert = tmp_path / "bert"
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
               intermediate_size=8).save_pretrained(bert)
    with pytest.raises(ValueError, match="'bert' model"):
        create_backbone(str(bert))
    with pytest.raises(ValueError, match="not CLIP"):
        CLIPBackbone(str(bert))
    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"\0")
    with pytest.raises(ValueError, match="is a file"):
        CLIPBackbone(str(weights))


def test_local_directory_never_touches_the_network(tiny_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access while loading a local CLIP directory")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    backbone = create_backbone(tiny_dir, image_size=48)
    with torch.no_grad():
        assert backbone.encode_text(["a photo of a bottle."]).shape == (1, TINY_EMBED)


def test_hidden_act_override(tiny_dir):
    default = create_backbone(tiny_dir)
    gelu = create_backbone(tiny_dir, hidden_act="gelu")
    assert default.spec.extra["hidden_act"] == "quick_gelu"
    assert gelu.spec.extra["hidden_act"] == "gelu"
    with torch.no_grad():
        a, b = default(_pixels(32)).global_embedding, gelu(_pixels(32)).global_embedding
    assert not torch.allclose(a, b)
