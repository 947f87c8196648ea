"""Exact text windows: batched maths against direct loop references on a tiny random CLIP."""

import pytest
import torch
import torch.nn.functional as F

from vandal.scoring.text import harmonic_mean
from vandal.scoring.windows import (
    harmonic_patch_scores,
    window_embeddings,
    window_index,
    window_scores,
    window_text_map,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vandal.backbones import create_backbone

    from clip_fixtures import make_tiny_clip

    return create_backbone(make_tiny_clip(tmp_path_factory.mktemp("clip")), device="cpu")


def test_window_index_lists_each_window_row_major():
    index = window_index(4, 2)
    assert index.shape == (9, 4)
    assert index[0].tolist() == [0, 1, 4, 5] and index[-1].tolist() == [10, 11, 14, 15]


def _direct_window(backbone, pixels, top, left, r):
    """One window, built by hand: CLS + pos[0], then each window patch + its own position row."""
    vision = backbone.model.vision_model
    patches = vision.embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [B, N, C]
    table = backbone.position_table
    grid = backbone.grid_size
    rows = [vision.embeddings.class_embedding + table[0]]
    for y in range(top, top + r):
        for x in range(left, left + r):
            rows.append(patches[0, y * grid + x] + table[1 + y * grid + x])
    seq = vision.pre_layrnorm(torch.stack(rows)[None])
    for layer in vision.encoder.layers:
        seq = layer(seq, None)
        seq = seq[0] if isinstance(seq, tuple) else seq
    return F.normalize(backbone.model.visual_projection(vision.post_layernorm(seq[:, 0])), dim=-1)[0]


def test_batched_windows_equal_direct_per_window_encoding(tiny):
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        batched = window_embeddings(tiny, pixels, 2, chunk=5)  # chunks that split windows and images
        for n, (top, left) in enumerate((t, l) for t in range(3) for l in range(3)):
            direct = _direct_window(tiny, pixels[1:2], top, left, 2)
            torch.testing.assert_close(batched[1, n], direct, rtol=1e-4, atol=1e-5)


def test_harmonic_aggregation_equals_loop_reference():
    torch.manual_seed(1)
    grid, r = 5, 3
    scores = torch.rand(2, (grid - r + 1) ** 2) + 0.05
    got = harmonic_patch_scores(scores, grid, r)
    side = grid - r + 1
    for b in range(2):
        for y in range(grid):
            for x in range(grid):
                covering = [scores[b, ty * side + tx] for ty in range(side) for tx in range(side)
                            if ty <= y < ty + r and tx <= x < tx + r]
                expected = len(covering) / sum(1 / s for s in covering)
                assert got[b, y, x] == pytest.approx(float(expected), rel=1e-5)


def test_window_text_map_combines_scales_by_harmonic_mean(tiny):
    torch.manual_seed(2)
    pixels = torch.randn(1, 3, 32, 32)
    text = F.normalize(torch.randn(2, tiny.spec.embed_dim), dim=-1)
    patch = torch.rand(1, 4, 4) + 0.1
    with torch.inference_mode():
        combined = window_text_map(tiny, pixels, text, (2, 3), patch)
        per_scale = [harmonic_patch_scores(window_scores(window_embeddings(tiny, pixels, r), text), 4, r)
                     for r in (2, 3)]
    torch.testing.assert_close(combined, harmonic_mean(torch.stack(per_scale + [patch]), 0))
    assert combined.shape == (1, 4, 4) and bool(((combined > 0) & (combined < 1)).all())


@pytest.mark.parametrize("scales", ["windows", "pooled"])
def test_detector_text_scales_zero_shot_and_bundle(tmp_path, scales):
    from vandal.detector import Detector

    from clip_fixtures import make_tiny_clip

    clip = make_tiny_clip(tmp_path / "clip")
    image = (torch.rand(48, 40, 3) * 255).to(torch.uint8).numpy()
    detector = Detector(backbone=clip, class_name="bottle", text_scales=scales, window_sizes=(2, 3), device="cpu",
                        progress=False).fit()
    (prediction,) = detector.predict(image)
    assert prediction.anomaly_map.shape == (48, 40)
    plain = Detector(backbone=clip, class_name="bottle", device="cpu", progress=False).fit().predict(image)[0]
    assert not torch.allclose(torch.from_numpy(prediction.anomaly_map), torch.from_numpy(plain.anomaly_map))
    detector.save(str(tmp_path / "det"))
    loaded = Detector.load(str(tmp_path / "det"), device="cpu", progress=False)
    assert loaded.config.text.scales == scales and loaded.config.text.window_sizes == (2, 3)
    assert loaded.predict(image)[0].pred_score == pytest.approx(prediction.pred_score, rel=1e-5)
