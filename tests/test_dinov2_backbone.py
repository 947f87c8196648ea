"""DINOv2Backbone on tiny random DINOv2 models (with and without registers) saved to disk and loaded
back through the real path: the contract, the registry, the detector, the bundle and the CLI."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dino_fixtures import TINY_DEPTH, TINY_MEAN, TINY_REGISTERS, TINY_STD, TINY_WIDTH, make_tiny_dinov2
from PIL import Image

from vandal import Detector
from vandal.backbones import create_backbone, resolve_kind
from vandal.backbones.dinov2 import DINOv2Backbone, resolve_taps
from vandal.backbones.hf import INSTALL_HINT, require_transformers
from vandal.cli.main import app


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "registers"])
def tiny_dir(request, tmp_path_factory) -> str:
    return make_tiny_dinov2(tmp_path_factory.mktemp("dinov2"), registers=request.param)


def _pixels(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_taps_are_the_normed_patch_grid_of_the_hf_model(tiny_dir):
    from transformers import AutoModel

    backbone = create_backbone(tiny_dir, image_size=42, taps=(2, -1))
    assert isinstance(backbone, DINOv2Backbone) and not backbone.has_text
    model = AutoModel.from_pretrained(tiny_dir, local_files_only=True).eval()
    registers = TINY_REGISTERS if model.config.model_type == "dinov2_with_registers" else 0
    pixels = _pixels(42)
    with torch.no_grad():
        out = backbone(pixels)
        reference = model(pixels, output_hidden_states=True)
    assert out.global_embedding is None
    skip = 1 + registers  # CLS and the registers are not patches
    expected = [model.layernorm(reference.hidden_states[2]), reference.last_hidden_state]
    for tap, full in zip(out.taps, expected, strict=True):
        assert tap.shape == (2, 3, 3, TINY_WIDTH)
        torch.testing.assert_close(tap, full[:, skip:].reshape(2, 3, 3, TINY_WIDTH))
    spec = backbone.spec
    assert (spec.kind, spec.image_size, spec.taps, spec.tap_dims) == ("dinov2", 42, (2, TINY_DEPTH), (TINY_WIDTH,) * 2)
    assert spec.extra["register_tokens"] == registers and spec.extra["patch_size"] == 14


def test_preprocessing_registry_and_defaults(tiny_dir):
    assert resolve_kind(tiny_dir) == "dinov2"
    backbone = create_backbone(tiny_dir)
    pre = backbone.preprocessing
    assert pre.mean == pytest.approx(TINY_MEAN) and pre.std == pytest.approx(TINY_STD) and pre.resample == "bicubic"
    assert backbone.image_size == 448 and backbone.spec.taps == (1, 2, 3, 4)
    assert resolve_taps((-1,), 12) == (12,) and resolve_taps(None, 24) == (6, 12, 18, 24)


def test_misuse_fails_clearly(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        create_backbone(tiny_dir, image_size=50)
    with pytest.raises(ValueError, match=r"in \[1, 4\]"):
        create_backbone(tiny_dir, taps=(5,))
    with pytest.raises(ValueError, match="duplicate"):
        create_backbone(tiny_dir, taps=(4, -1))
    with pytest.raises(ValueError, match="only apply to CLIP"):
        create_backbone(tiny_dir, hidden_act="gelu")
    with pytest.raises(ValueError, match="not DINOv2"):
        DINOv2Backbone(_bert(tmp_path))


def _bert(tmp_path) -> str:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(
        tmp_path / "bert")
    return str(tmp_path / "bert")


def test_resolution_is_by_config_or_known_hub_ids(tmp_path):
    assert resolve_kind("facebook/dinov2-small") == "dinov2"
    assert resolve_kind("facebook/dinov2-with-registers-base") == "dinov2"
    assert resolve_kind("openai/clip-vit-large-patch14-336") == "clip"
    with pytest.raises(ValueError, match="unknown backbone"):
        resolve_kind("someone/my-clip-finetune")  # a name containing "clip" is no longer CLIP
    with pytest.raises(ValueError, match="'bert' model"):
        resolve_kind(_bert(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        resolve_kind(str(tmp_path / "empty"))


def test_missing_transformers_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ImportError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        require_transformers()


def test_detector_fit_predict_save_load_offline(tiny_dir, textures, tmp_path, monkeypatch):
    references, tests = textures
    detector = Detector(backbone=tiny_dir, image_size=56, taps=(2, 4), distribution="off", batch_size=4)
    detector.fit(references[:2])
    before = detector.predict([tests[0][0]])[0]
    detector.save(tmp_path / "bundle")

    def no_network(*args, **kwargs):
        raise AssertionError("network access while loading a local DINOv2 directory")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded = Detector.load(tmp_path / "bundle")
    after = loaded.predict([tests[0][0]])[0]
    assert loaded.backbone_.spec.to_dict() == detector.backbone_.spec.to_dict()
    assert after.pred_score == pytest.approx(before.pred_score, rel=1e-5)
    np.testing.assert_allclose(after.anomaly_map, before.anomaly_map, rtol=1e-4, atol=1e-6)


def test_cli_fit_with_a_dinov2_directory(tiny_dir, textures, tmp_path):
    references, tests = textures
    normal = tmp_path / "normal"
    normal.mkdir()
    for i, image in enumerate(references[:2]):
        Image.fromarray(image).save(normal / f"ref{i}.png")
    Image.fromarray(tests[0][0]).save(tmp_path / "x.png")
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--normal", str(normal), "--out", str(tmp_path / "model"), "--backbone",
                                 tiny_dir, "--image-size", "56", "--distribution", "off"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "model"), str(tmp_path / "x.png"), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "predictions.csv").is_file()


def test_onnx_export_of_a_dinov2_memory_detector(tiny_dir, textures, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from vandal.export import OnnxDetector, export_onnx

    references, tests = textures
    detector = Detector(backbone=tiny_dir, image_size=56, taps=(2, 4), distribution="off", progress=False)
    detector.fit(references)
    export_onnx(detector, tmp_path / "m.onnx")
    ours, theirs = detector.predict([tests[0][0]])[0], OnnxDetector(tmp_path / "m.onnx").predict([tests[0][0]])[0]
    assert theirs.pred_score == pytest.approx(ours.pred_score, rel=1e-4, abs=1e-5)
