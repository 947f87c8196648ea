"""The anomaly-dino preset (AnomalyDINO, WACV 2025) on a tiny random DINOv2 loaded through the real path:
its scores against a numpy transcription of the published formulas, and its surfaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dino_fixtures import make_tiny_dinov2

from vandal import Detector
from vandal.config import ConfigError, from_dict
from vandal.memory.augment import Transform, augment, rotation_transforms
from vandal.memory.maps import top_mean
from vandal.presets import load_preset, preset_names

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 56  # a 4 x 4 grid of 14-pixel patches: 16 patches per view


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return make_tiny_dinov2(tmp_path_factory.mktemp("dino"), registers=True)


def np_mean_top1p(distances: np.ndarray) -> float:
    """AnomalyDINO's image score: the mean of the int(1% of n) largest patch distances, else the maximum."""
    flat = distances.reshape(-1)
    k = int(len(flat) * 0.01)
    return float(flat.max()) if k == 0 else float(np.sort(flat)[::-1][:k].mean())


def np_patch_features(model, image: np.ndarray, prep, registers: int) -> np.ndarray:
    """Last-layer DINOv2 patch tokens (final LayerNorm, CLS and registers dropped) ``[L, C]``."""
    from vandal.data.layout import to_input

    with torch.no_grad():
        tokens = model(to_input(image, SIZE, prep)[None]).last_hidden_state[0, 1 + registers:]
    return tokens.double().numpy()


def test_presets_are_listed():
    assert {"anomaly-dino", "musc"} <= set(preset_names())
    assert load_preset("anomaly-dino").detector["backbone"]["taps"] == [-1]


def test_rotations_are_the_seven_45_degree_turns():
    angles = [round(math.degrees(t.angle)) for t in rotation_transforms()]
    assert angles == [45, 90, 135, 180, 225, 270, 315]
    assert top_mean(torch.arange(10.0), 0.01) == 9.0 and top_mean(torch.arange(300.0), 0.01) == 298.0
    with pytest.raises(ConfigError, match="top_fraction"):
        from_dict({"top_fraction": 0})


def test_scores_match_the_transcription(tiny_dir, textures):
    from transformers import AutoModel

    references, tests = textures
    detector = Detector(preset="anomaly-dino", backbone=tiny_dir, image_size=SIZE, progress=False)
    detector.fit(references[:1])
    assert detector.backbone_.spec.taps == (4,)  # -1: the last of 4 blocks
    assert len(detector.plan_.views) == 8  # identity and 7 rotations
    model = AutoModel.from_pretrained(tiny_dir, local_files_only=True).eval()
    prep, registers = detector.backbone_.preprocessing, model.config.num_register_tokens

    transforms = [Transform()] + rotation_transforms()
    bank = np.concatenate([np_patch_features(model, view, prep, registers)
                           for view in augment(references[0], transforms)])
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    for image in (tests[0][0], references[1]):
        query = np_patch_features(model, image, prep, registers)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        distances = 1.0 - (query @ bank.T).max(1)  # faiss L2 of unit vectors / 2
        answer = next(s for s in detector.sources_ if s.name == "memory").score(detector.embedder_.image(image))
        assert answer.image_score == pytest.approx(np_mean_top1p(distances), abs=1e-5)
        grid = torch.nn.functional.interpolate(torch.tensor(distances).reshape(1, 1, 4, 4), size=(SIZE, SIZE),
                                               mode="bilinear", align_corners=True)[0]
        np.testing.assert_allclose(answer.map.numpy(), grid.numpy(), rtol=1e-4, atol=1e-5)
        prediction = detector.predict([image])[0]
        assert prediction.raw_score == pytest.approx(np_mean_top1p(distances), abs=1e-5)


def test_bundle_round_trip_and_onnx_refusal(tiny_dir, textures, tmp_path):
    from vandal.export import NotExportableError, export_onnx

    references, tests = textures
    detector = Detector(preset="anomaly-dino", backbone=tiny_dir, image_size=SIZE, progress=False)
    detector.fit(references)
    detector.save(tmp_path / "bundle")
    loaded = Detector.load(tmp_path / "bundle")
    a, b = detector.predict([tests[1][0]])[0], loaded.predict([tests[1][0]])[0]
    assert a.pred_score == pytest.approx(b.pred_score, rel=1e-5)
    with pytest.raises(NotExportableError, match="top_fraction"):
        export_onnx(loaded, tmp_path / "m.onnx")


def test_service_predicts_with_the_preset(tiny_dir, textures, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vandal.serve import create_app

    from serve_helpers import parts, png_bytes

    references, tests = textures
    Detector(preset="anomaly-dino", backbone=tiny_dir, image_size=SIZE, progress=False).fit(references).save(
        tmp_path / "dino")
    client = TestClient(create_app(models=tmp_path, device="cpu", max_pixels=2_000_000),
                        base_url="http://127.0.0.1")  # a loopback Host: the DNS-rebinding guard allows it
    answer = client.post("/models/dino/predict?include=", files=parts([("x.png", png_bytes(tests[0][0]))]))
    assert answer.status_code == 200, answer.text
    saved = Detector.load(tmp_path / "dino").predict([tests[0][0]])[0]
    assert answer.json()["results"][0]["pred_score"] == pytest.approx(saved.pred_score, rel=1e-4)


def np_column_morphology(mask: np.ndarray, op: str) -> np.ndarray:
    """OpenCV's 3 x 3 dilate / erode of an ``[n, 1]`` uint8 image (default borders): only the rows above
    and below exist, so each patch meets the previous and next in raster order."""
    out = mask.copy()
    n = len(mask)
    for i in range(n):
        window = mask[max(0, i - 1):min(n, i + 2)]
        out[i] = window.max() if op == "dilate" else window.min()
    return out


def np_background_mask(features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """AnomalyDINO's compute_background_mask(threshold=10, masking_type=True), sklearn's PCA included."""
    from sklearn.decomposition import PCA

    first_pc = PCA(n_components=1, svd_solver="randomized", random_state=0).fit_transform(features.astype(np.float32))
    mask = first_pc > 10
    h, w = grid
    m = mask.reshape(grid)[int(h * 0.2):int(h * 0.8), int(w * 0.2):int(w * 0.8)]
    if m.sum() <= m.size * 0.35:
        mask = -first_pc > 10
    mask = np_column_morphology(mask.astype(np.uint8), "dilate")
    mask = np_column_morphology(np_column_morphology(mask, "dilate"), "erode")  # MORPH_CLOSE
    return mask.squeeze().astype(bool)


@pytest.mark.parametrize("object_sign", [1.0, -1.0])
def test_background_mask_matches_the_authors_formula(object_sign):
    pytest.importorskip("sklearn")
    from vandal.memory.background import background_mask

    rng = np.random.default_rng(3)
    h = w = 10
    direction = rng.normal(size=32)
    direction /= np.linalg.norm(direction)
    inside = np.zeros((h, w), bool)
    inside[2:8, 3:8] = True
    inside[5, 5] = False  # a hole the closing fills
    features = rng.normal(size=(h * w, 32)) + np.where(inside.reshape(-1, 1), 14.0, -14.0) * object_sign * direction
    ours = background_mask(torch.tensor(features, dtype=torch.float32).reshape(h, w, 32))
    np.testing.assert_array_equal(ours.numpy().reshape(-1), np_background_mask(features, (h, w)))
    assert ours[2:8, 3:8].all() and not ours[0].any()


def test_masking_zeroes_the_background_patches(tiny_dir, textures):
    references, tests = textures
    detector = Detector(preset="anomaly-dino", backbone=tiny_dir, image_size=SIZE, mask_background=True,
                        progress=False).fit(references[:1])
    item = detector.embedder_.image(tests[0][0])
    source = next(s for s in detector.sources_ if s.name == "memory")
    from vandal.memory.background import background_mask
    from vandal.memory.maps import tap_distances

    mask = background_mask(item.output.taps[-1][0])
    raw = tap_distances(item.output.taps, source.banks.banks, source.neighbourhood)[0][0]
    expected = float((raw * mask).reshape(-1).max())  # 16 patches: top 1% is the maximum
    assert source.score(item).image_score == pytest.approx(expected, abs=1e-6)
