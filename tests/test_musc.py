"""MuSc zero-shot (the mutual-batch source with scoring="musc"): the maths against a numpy transcription
of the published formulas (LayerNorm, LNAMD, MSM, RsCIN), the source, the preset and its surfaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vandal import Detector
from vandal.config import ConfigError, from_dict
from vandal.scoring.mutual import mutual_batch_maps, rescore
from vandal.sources.mutual import split_batch

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ numpy transcription (MuSc, ICLR 2024)


def np_layer_norm(grid: np.ndarray) -> np.ndarray:
    """nn.LayerNorm([C, h, w]) of one image (weight 1, bias 0, eps 1e-5)."""
    return (grid - grid.mean()) / np.sqrt(grid.var() + 1e-5)


def np_lnamd(grid: np.ndarray, r: int) -> np.ndarray:
    """Unfold r x r with zero padding, then the mean over the r*r values of each channel."""
    h, w, c = grid.shape
    pad = (r - 1) // 2
    padded = np.zeros((h + 2 * pad, w + 2 * pad, c))
    padded[pad:pad + h, pad:pad + w] = grid
    out = np.zeros_like(grid)
    for y in range(h):
        for x in range(w):
            out[y, x] = padded[y:y + r, x:x + r].reshape(-1, c).sum(0) / (r * r)
    return out


def np_msm(z: np.ndarray, lowest: float) -> np.ndarray:
    """z ``[N, L, C]`` unit vectors -> ``[N, L]``: per image j != i the nearest Euclidean distance,
    then the mean of the lowest int((N-1) * lowest) of them (at least one)."""
    n = len(z)
    out = np.zeros(z.shape[:2])
    for i in range(n):
        per_image = np.stack([np.sqrt(((z[i][:, None] - z[j][None]) ** 2).sum(-1)).min(1)
                              for j in range(n) if j != i], axis=1)
        k = max(1, int((n - 1) * lowest))
        out[i] = np.sort(per_image, axis=1)[:, :k].mean(1)
    return out


def np_musc_maps(taps: list[np.ndarray], rs: tuple[int, ...], lowest: float) -> np.ndarray:
    """Per tap, per r: LayerNorm, LNAMD, L2 normalisation, MSM; mean over r; sum over taps."""
    total = 0
    for tap in taps:
        n, h, w, c = tap.shape
        per_r = []
        for r in rs:
            z = np.stack([np_lnamd(np_layer_norm(tap[i]), r) for i in range(n)]).reshape(n, h * w, c)
            z = z / np.linalg.norm(z, axis=-1, keepdims=True)
            per_r.append(np_msm(z, lowest).reshape(n, h, w))
        total = total + np.mean(per_r, axis=0)
    return total


def np_rscin(scores: np.ndarray, cls: np.ndarray, ks: tuple[int, ...]) -> np.ndarray:
    """RsCIN's MMO on min-max normalised scores, mapped back to the raw range."""
    low, high = scores.min(), scores.max()
    unit = (scores - low) / (high - low)
    cls = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    w = cls @ cls.T
    out = []
    for k in ks:
        masked = np.zeros_like(w)
        for i in range(len(w)):
            keep = np.argsort(-w[i])[:k]
            masked[i, keep] = w[i, keep]
        out.append((masked / masked.sum(1, keepdims=True)) @ unit)
    return low + (high - low) * np.mean(out, axis=0)


def test_musc_maps_match_the_transcription():
    gen = torch.Generator().manual_seed(0)
    taps = [torch.randn(6, 5, 5, 8, generator=gen) * 3 + 1, torch.randn(6, 5, 5, 4, generator=gen)]
    ours = mutual_batch_maps(taps, torch.arange(6), size=5, neighbourhood=(1, 3, 5), scoring="musc", lowest=0.3)
    expected = np_musc_maps([t.double().numpy() for t in taps], (1, 3, 5), 0.3)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_musc_views_of_one_image_never_match_each_other(monkeypatch):
    import vandal.scoring.mutual as mutual

    monkeypatch.setattr(mutual, "KEY_CHUNK", 20)  # blocks of two views: they split images
    taps = [torch.randn(5, 3, 3, 6, generator=torch.Generator().manual_seed(1))]
    index = torch.tensor([0, 0, 1, 2, 2])  # five views of three images
    ours = mutual_batch_maps(taps, index, size=3, neighbourhood=(1,), scoring="musc", lowest=1.0)
    z = np.stack([np_layer_norm(t) for t in taps[0].double().numpy()]).reshape(5, 9, 6)
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    for v in range(5):
        others = [np.sqrt(((z[v][:, None] - z[index == g][:, None].reshape(-1, 6)[None]) ** 2).sum(-1)).min(1)
                  for g in range(3) if g != int(index[v])]
        np.testing.assert_allclose(ours[v].reshape(-1).numpy(), np.mean(others, axis=0), rtol=1e-4, atol=1e-5)


def test_rescore_matches_rscin():
    gen = torch.Generator().manual_seed(2)
    scores, features = torch.rand(7, generator=gen) * 3, torch.rand(7, 5, generator=gen)
    expected = np_rscin(scores.double().numpy(), features.double().numpy(), (1, 2, 3))
    np.testing.assert_allclose(rescore(scores, features, (1, 2, 3)).numpy(), expected, rtol=1e-5, atol=1e-6)
    flat = torch.full((4,), 0.2)
    assert torch.equal(rescore(flat, features[:4]), flat)  # nothing to normalise


def test_split_batch_is_random_near_equal_and_complete():
    assert split_batch(5, None) == [[0, 1, 2, 3, 4]] and split_batch(5, 8) == [[0, 1, 2, 3, 4]]
    parts = split_batch(9, 4)
    assert len(parts) == 3 and sorted(i for p in parts for i in p) == list(range(9))
    assert {len(p) for p in parts} == {3} and parts[0] != [0, 1, 2]
    assert split_batch(9, 4) == parts  # seeded


def test_config_refuses_musc_settings_outside_the_batch_mode():
    for settings in ({"mutual_scoring": "musc"}, {"rescore": [1]}, {"mutual": "objects", "mutual_batch_cap": 8}):
        with pytest.raises(ConfigError, match="mutual.mode = batch"):
            from_dict(settings)
    with pytest.raises(ConfigError, match="mutual.lowest"):
        from_dict({"mutual": "batch", "mutual_lowest": 0})
    with pytest.raises(ConfigError, match="batch_cap"):
        from_dict({"mutual": "batch", "mutual_batch_cap": 2})


@pytest.fixture(scope="module")
def batch(textures):
    references, tests = textures
    return references + [image for image, _ in tests]  # 2 normal textures, then 4 with planted defects


def test_musc_preset_finds_the_defects_and_rescoring_changes_image_scores(batch):
    detector = Detector(preset="musc", image_size=128, progress=False).fit()
    assert detector.transductive and detector.config.mutual.scoring == "musc"
    predictions = detector.predict(batch)
    scores = [p.pred_score for p in predictions]
    assert max(scores[:2]) < min(scores[2:])
    plain = Detector(preset="musc", image_size=128, rescore=None, progress=False).fit().predict(batch)
    assert [p.pred_score for p in plain] != scores
    for ours, theirs in zip(predictions, plain):  # re-scoring touches image scores only
        np.testing.assert_allclose(ours.anomaly_map, theirs.anomaly_map, rtol=1e-5, atol=1e-6)


def test_musc_capped_batches_still_score_every_image(batch):
    detector = Detector(preset="musc", image_size=128, mutual_batch_cap=4, progress=False).fit()
    predictions = detector.predict(batch)
    assert len(predictions) == len(batch) and all(np.isfinite(p.pred_score) for p in predictions)


def test_the_all_pairs_comparisons_show_a_progress_bar(batch, capsys):
    """Minutes on a CPU for a hundred images: one step per part, tap and neighbourhood, and none when quiet."""
    Detector(preset="musc", image_size=128, mutual_batch_cap=4, progress=True).fit().predict(batch)
    err = capsys.readouterr().err
    steps = 2 * 2 * 3  # 6 images in 2 parts of 3, taps 8 and 16, neighbourhoods 1, 3, 5
    assert f"comparing {len(batch)} images with each other" in err and f"{steps}/{steps}" in err
    Detector(preset="musc", image_size=128, progress=False).fit().predict(batch)
    assert "comparing" not in capsys.readouterr().err


def test_musc_refuses_onnx_export(tmp_path):
    from vandal.export import NotExportableError, export_onnx

    detector = Detector(preset="musc", image_size=64, device="cpu", progress=False).fit()
    with pytest.raises(NotExportableError, match="mutual.mode"):
        export_onnx(detector, tmp_path / "musc.onnx")


def test_musc_bundle_predicts_through_the_service(batch, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vandal.serve import create_app

    from serve_helpers import parts, png_bytes

    Detector(preset="musc", image_size=128, progress=False).fit().save(tmp_path / "models" / "musc")
    client = TestClient(create_app(models=tmp_path / "models", device="cpu", max_pixels=2_000_000),
                        base_url="http://127.0.0.1")  # a loopback Host: the DNS-rebinding guard allows it
    answer = client.post("/models/musc/predict?include=",
                         files=parts([(f"{i}.png", png_bytes(image)) for i, image in enumerate(batch)]))
    assert answer.status_code == 200, answer.text
    scores = [p["pred_score"] for p in answer.json()["results"]]
    assert len(scores) == len(batch) and max(scores[:2]) < min(scores[2:])
    # one image cannot be compared with others: the request is refused, the model is not "damaged"
    alone = client.post("/models/musc/predict?include=", files=parts([("0.png", png_bytes(batch[0]))]))
    assert alone.status_code == 422 and "at least 2" in alone.text and "damaged" not in alone.text


def test_ray_engine_refuses_a_transductive_bundle_before_starting_a_cluster(batch, tmp_path, monkeypatch):
    from vandal.engines import ray_engine

    Detector(preset="musc", image_size=64, progress=False).fit().save(tmp_path / "musc")
    paths = []
    for i, image in enumerate(batch[:3]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(ray_engine, "cluster", no_cluster)
    with pytest.raises(ValueError, match="transductive.*--engine local"):
        ray_engine.ray_predict(tmp_path / "musc", paths, tmp_path / "out")
    assert not (tmp_path / "out").exists()



def test_musc_decision_level_is_the_cosine_level_in_euclidean_units():
    detector = Detector(preset="musc", image_size=64, progress=False).fit()
    source = next(s for s in detector.sources_ if s.name == "mutual-batch")
    levels = source.fixed_levels()
    assert levels.pixel == pytest.approx(np.sqrt(2 * 0.3) * 2)  # two taps
    assert levels.image == levels.pixel  # re-scored image scores stay in map units
