"""Zero-shot text scoring functions and the tap adapters, on fixed tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from vandal.scoring.adapters import TapAdapters
from vandal.scoring.smoothing import gaussian_smooth
from vandal.scoring.text import (
    harmonic_mean,
    pool_tokens,
    pooled_text_maps,
    text_anomaly_maps,
    text_image_score,
)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


TEXT = F.normalize(_randn(2, 8, seed=1), dim=-1)


def test_text_image_score():
    g = F.normalize(_randn(3, 8), dim=-1)
    expected = torch.softmax(100 * g @ TEXT.T, dim=-1)[:, 1]
    torch.testing.assert_close(text_image_score(g, TEXT), expected)
    # Higher similarity to the abnormal row gives a higher score.
    scores = text_image_score(TEXT, TEXT)
    assert scores[1] > 0.5 > scores[0]


def _naive_map(tap: torch.Tensor, text: torch.Tensor, size: int) -> torch.Tensor:
    """One tap, written out: cosine logits per token and class, upsample logits, two-way softmax."""
    batch, h, w, _ = tap.shape
    logits = torch.zeros(batch, 2, h, w)
    for b in range(batch):
        for i in range(h):
            for j in range(w):
                for k in range(2):
                    logits[b, k, i, j] = 100 * F.cosine_similarity(tap[b, i, j], text[k], dim=0)
    up = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=True)
    return torch.exp(up[:, 1]) / (torch.exp(up[:, 0]) + torch.exp(up[:, 1]))


def test_text_anomaly_maps_match_a_naive_implementation():
    taps = [0.05 * _randn(2, 3, 3, 8, seed=s) for s in (2, 3)]  # small norms: normalisation matters
    maps = text_anomaly_maps(taps, TEXT, size=7)
    assert maps.shape == (2, 7, 7)
    expected = _naive_map(taps[0], TEXT, 7) + _naive_map(taps[1], TEXT, 7)
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-5)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 2


def test_logits_are_upsampled_before_the_softmax():
    # A 2x2 grid: with align_corners=True the centre of a 3x3 output is the mean of 4 logits.
    tap = torch.zeros(1, 2, 2, 8)
    tap[0, 0, 0], tap[0, 1, 1] = TEXT[1], TEXT[1]
    tap[0, 0, 1], tap[0, 1, 0] = TEXT[0], TEXT[0]
    centre = float(text_anomaly_maps([tap], TEXT, size=3)[0, 1, 1])
    assert centre == pytest.approx(0.5, abs=1e-6)
    corner = float(text_anomaly_maps([tap], TEXT, size=3)[0, 0, 0])
    cos = float(TEXT[0] @ TEXT[1])
    assert corner == pytest.approx(torch.sigmoid(torch.tensor(100 * (1 - cos))).item(), abs=1e-6)
    # Upsampling probabilities instead would differ off the grid points.
    taps = [_randn(1, 3, 3, 8, seed=4)]
    probs = (100 * F.normalize(taps[0], dim=-1) @ TEXT.T).softmax(-1)[..., 1][:, None]
    wrong = F.interpolate(probs, size=(8, 8), mode="bilinear", align_corners=True)[:, 0]
    assert not torch.allclose(text_anomaly_maps(taps, TEXT, size=8), wrong, atol=1e-3)


def test_harmonic_mean():
    values = torch.tensor([[1.0, 2.0], [2.0, 0.0], [4.0, 5.0]])
    out = harmonic_mean(values, dim=0)
    assert float(out[0]) == pytest.approx(3 / (1 + 0.5 + 0.25))
    assert float(out[1]) == 0.0


def test_pool_tokens_ignores_padding():
    tokens = torch.arange(16.0).reshape(1, 4, 4, 1)
    pooled = pool_tokens(tokens, 3)
    assert pooled.shape == tokens.shape
    assert float(pooled[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert float(pooled[0, 1, 1, 0]) == pytest.approx(tokens[0, :3, :3].mean().item())
    torch.testing.assert_close(pool_tokens(tokens, 1), tokens)
    with pytest.raises(ValueError):
        pool_tokens(tokens, 2)


def test_pooled_maps_single_scale_equal_the_plain_map():
    taps = [_randn(2, 5, 5, 8, seed=s) for s in (5, 6)]
    torch.testing.assert_close(pooled_text_maps(taps, TEXT, 11, scales=(1,)),
                               text_anomaly_maps(taps, TEXT, 11))


def test_pooled_maps_harmonic_over_scales_then_sum_over_taps():
    taps = [_randn(1, 5, 5, 8, seed=s) for s in (7, 8)]
    out = pooled_text_maps(taps, TEXT, 9, scales=(1, 3))
    expected = 0
    for tap in taps:
        a = text_anomaly_maps([tap], TEXT, 9)
        b = text_anomaly_maps([pool_tokens(tap, 3)], TEXT, 9)
        expected = expected + 2 * a * b / (a + b)
    torch.testing.assert_close(out, expected)
    assert out.shape == (1, 9, 9)


def test_gaussian_smooth():
    constant = torch.full((2, 9, 13), 0.7)
    torch.testing.assert_close(gaussian_smooth(constant, sigma=4), constant)
    maps = _randn(2, 20, 17)
    smooth = gaussian_smooth(maps, sigma=2)
    assert smooth.shape == maps.shape
    expected = np.stack([ndimage.gaussian_filter(m, 2, mode="reflect") for m in maps.numpy()])
    np.testing.assert_allclose(smooth.numpy(), expected, atol=1e-5)
    # A kernel wider than the map still works (mirrored repeatedly, as scipy does).
    tiny = _randn(1, 3, 4)
    expected = ndimage.gaussian_filter(tiny[0].numpy(), 4, mode="reflect")
    np.testing.assert_allclose(gaussian_smooth(tiny)[0].numpy(), expected, atol=1e-5)
    torch.testing.assert_close(gaussian_smooth(maps, sigma=0), maps)


def test_gaussian_smooth_by_matrices_equals_the_convolutions(monkeypatch):
    from vandal.scoring import smoothing

    maps = _randn(3, 40, 29) * 5
    by_matrices = gaussian_smooth(maps, sigma=4)
    monkeypatch.setattr(smoothing, "MATMUL_SIDE", 8)  # every side above it: the conv1d passes
    by_convolutions = gaussian_smooth(maps, sigma=4)
    torch.testing.assert_close(by_matrices, by_convolutions, rtol=1e-6, atol=1e-5)
    expected = np.stack([ndimage.gaussian_filter(m, 4, mode="reflect") for m in maps.numpy()])
    np.testing.assert_allclose(by_matrices.numpy(), expected, atol=1e-5)
    matrix = smoothing.blur_matrix(40, 4.0, 4.0, "cpu")
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(40))  # every output is a weighted mean
    smoothing.blur_matrix.cache_clear()
    with torch.inference_mode():  # cached here, as predict does ...
        gaussian_smooth(maps, sigma=4)
    with torch.enable_grad():  # ... and still usable in training (not an inference tensor)
        leaf = maps.clone().requires_grad_()
        gaussian_smooth(leaf, sigma=4).sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == maps.shape


def test_tap_adapters_layout_and_forward():
    adapters = TapAdapters.from_widths([6, 6, 4], embed_dim=5)
    keys = set(adapters.state_dict())
    assert keys == {f"fc.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert adapters.fc[2].weight.shape == (5, 4)
    taps = [_randn(2, 3, 3, 6), _randn(2, 3, 3, 6, seed=1), _randn(2, 3, 3, 4, seed=2)]
    out = adapters(taps)
    assert [tuple(o.shape) for o in out] == [(2, 3, 3, 5)] * 3
    torch.testing.assert_close(out[2], taps[2] @ adapters.fc[2].weight.T + adapters.fc[2].bias)
    # A checkpoint in the authors' layout loads as is.
    state = {k: torch.full_like(v, 0.5) for k, v in adapters.state_dict().items()}
    adapters.load_state_dict(state)
    assert adapters.fc[1].bias.detach()[0].item() == 0.5
    with pytest.raises(ValueError):
        adapters(taps[:2])


def test_a_non_finite_value_stays_where_it_is():
    for bad in (float("inf"), float("nan")):
        maps = torch.zeros(1, 50, 50)
        maps[0, 20, 20] = bad
        smooth = gaussian_smooth(maps, sigma=1)  # radius 4: a 9 x 9 neighbourhood at most
        assert int((~torch.isfinite(smooth)).sum()) <= 81 and bool(torch.isfinite(smooth[0, :10, :10]).all())
