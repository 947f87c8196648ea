import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vandal.scoring.distribution import (
    DistributionModel,
    TokenGaussian,
    TokenMoments,
    diagonal_halves,
    loo_scale,
    oas_covariance,
    split_null,
    views_null,
)


def tokens(seed: int, n: int = 200, c: int = 6, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=gen, dtype=torch.float64) + 3.0
    x[:, 0] += shift
    return x


def test_moments_add_and_subtract_like_concatenation():
    a, b = tokens(0), tokens(1, n=50)
    both = TokenMoments.of(torch.cat([a, b]))
    summed = TokenMoments.of(a) + TokenMoments.of(b)
    assert summed.count == both.count
    assert torch.allclose(summed.outer, both.outer) and torch.allclose(summed.total, both.total)
    back = summed - TokenMoments.of(b)
    assert torch.allclose(back.mean, TokenMoments.of(a).mean)


def test_oas_matches_scikit_learn():
    from sklearn.covariance import OAS

    x = tokens(2, n=40, c=12)
    normalised = F.normalize(x, dim=-1)
    expected = OAS(assume_centered=False).fit(normalised.numpy()).covariance_
    assert np.allclose(oas_covariance(TokenMoments.of(x)).numpy(), expected, atol=1e-10)


def test_mean_shift_is_the_mahalanobis_distance_of_the_mean_token():
    ref, test = tokens(3), tokens(4, n=30, shift=2.0)
    gaussian = TokenGaussian.fit(TokenMoments.of(ref))
    d = F.normalize(test, dim=-1).mean(0) - F.normalize(ref, dim=-1).mean(0)
    cov = oas_covariance(TokenMoments.of(ref))
    assert gaussian.mean_shift(test) == pytest.approx(float(d @ torch.linalg.solve(cov, d)), rel=1e-9)


def fitted(grids: list[torch.Tensor], max_folds: int = 16) -> DistributionModel:
    model = DistributionModel(max_folds, margin=2.0)
    for g in grids:
        model.add(g)
    model.finish()
    return model


def test_leave_one_out_nulls_equal_refits_on_the_others():
    grids = [tokens(10 + i, n=64).reshape(1, 8, 8, 6) for i in range(4)]
    model = fitted(grids)
    loo = model.nulls[0::2]  # leave-one-out and split null alternate per reference
    for i, value in enumerate(loo):
        others = torch.cat([g for j, g in enumerate(grids) if j != i])
        want = loo_scale(4) * TokenGaussian.fit(TokenMoments.of(others)).mean_shift(grids[i])
        assert value == pytest.approx(want, rel=1e-9)
    assert model.nulls[1::2] == pytest.approx([split_null(g[0]) for g in grids])
    assert model.level == pytest.approx(sum(model.nulls) / 8)
    assert fitted(grids[:1]).nulls == pytest.approx([split_null(grids[0][0])])  # one reference: split only


def test_adding_references_later_equals_fitting_on_all():
    grids = [tokens(20 + i, n=64).reshape(1, 8, 8, 6) for i in range(5)]
    late = fitted(grids[:3])
    for g in grids[3:]:
        late.add(g)
    late.finish()
    at_once = fitted(grids)
    assert torch.allclose(late.gaussian.precision, at_once.gaussian.precision)
    test = tokens(40, n=64).reshape(1, 64, 6)
    assert float(late.decisions(test)[0]) == pytest.approx(float(at_once.decisions(test)[0]), rel=0.5)
    assert late.references == 5 and len(late.nulls) == len(at_once.nulls)


def test_only_the_first_folds_keep_their_moments():
    grids = [tokens(30 + i, n=64).reshape(1, 8, 8, 6) for i in range(4)]
    model = DistributionModel(max_folds=2, margin=2.0)
    for g in grids:
        model.add(g)
    assert [s.moments is not None for s in model.pending] == [True, True, False, False]
    model.finish()
    assert len(model.nulls) == 2 + 4  # two leave-one-out folds, a split null per reference


def test_diagonal_halves_cover_the_grid_once_with_every_border():
    grid = torch.arange(6 * 4 * 1, dtype=torch.float64).reshape(6, 4, 1)
    a, b = diagonal_halves(grid)
    assert len(a) + len(b) == 24 and set(a.ravel().tolist()) | set(b.ravel().tolist()) == set(range(24))
    assert {0.0, 23.0} <= set(a.ravel().tolist())  # top-left and bottom-right corners in one half
    assert {3.0, 20.0} <= set(b.ravel().tolist())


def test_split_null_is_small_on_a_stationary_grid_and_large_on_a_two_part_one():
    gen = torch.Generator().manual_seed(5)
    stationary = torch.randn(12, 12, 8, generator=gen) + 2.0
    two_parts = stationary.clone()
    two_parts[:6, :6, 0] += 8.0  # one quadrant is another material: an object, not a texture
    assert split_null(two_parts) > 10 * split_null(stationary)


def test_decisions_flag_a_global_shift_and_not_new_normal_draws():
    gen = torch.Generator().manual_seed(6)
    refs = torch.randn(3, 1, 10, 10, 16, generator=gen) + 1.0
    normal = torch.randn(5, 100, 16, generator=gen) + 1.0
    shifted = normal.clone()
    shifted[..., :4] += 0.5  # every token moves a little: no single token is unusual
    model = fitted(list(refs))
    assert len(model.nulls) == 6  # 3 leave-one-out + 3 splits
    assert float(model.decisions(normal).max()) < 1.0 < float(model.decisions(shifted).min())


def test_state_round_trip_and_damage():
    gen = torch.Generator().manual_seed(7)
    model = fitted([torch.randn(1, 6, 6, 5, generator=gen) for _ in range(3)])
    again = DistributionModel(16, 2.0)
    again.load(model.state_dict(), model.meta())
    test = torch.randn(3, 36, 5, generator=gen)
    assert torch.allclose(model.decisions(test), again.decisions(test))
    for key, value in (("level", 0.0), ("level", float("nan")), ("tokens", 1), ("references", True)):
        with pytest.raises(ValueError, match=key):
            DistributionModel(16, 2.0).load(model.state_dict(), {**model.meta(), key: value})
    with pytest.raises(ValueError, match=r"\[V, h, w, C\]"):
        DistributionModel(16, 2.0).add(torch.randn(6, 6, 5))
    with pytest.raises(ValueError, match="not fitted"):
        DistributionModel(16, 2.0).decisions(test)


def test_parts_that_differ_globally_are_told_from_a_stationary_product():
    """Whole references that differ more than one reference's halves (a light shift per part) say the
    mean token varies between normal parts; draws of one texture do not."""
    gen = torch.Generator().manual_seed(7)
    same = [torch.randn(1, 10, 10, 16, generator=gen) + 1.0 for _ in range(4)]
    lit = [g.clone() for g in same]
    for i, grid in enumerate(lit):
        grid[..., :4] += 0.4 * i  # each part a little brighter than the last
    assert fitted(same).parts_differ() is False
    assert fitted(lit).parts_differ() is True
    assert fitted(same[:1]).parts_differ() is None  # one reference: no parts to compare


def test_split_null_of_a_tiled_image_halves_the_whole_image():
    """Views of one image (tiles of a long part) are halved alike and the halves pooled: one view gives
    the single-grid null, several the null of half the whole image against the other half."""
    gen = torch.Generator().manual_seed(8)
    tiles = torch.randn(3, 8, 8, 6, generator=gen) + 2.0
    assert split_null(tiles[:1]) == split_null(tiles[0])
    halves = [diagonal_halves(t) for t in tiles]
    a, b = torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])
    want = 0.5 * 0.5 * (TokenGaussian.fit(TokenMoments.of(b)).mean_shift(a)
                        + TokenGaussian.fit(TokenMoments.of(a)).mean_shift(b))
    assert split_null(tiles) == pytest.approx(want, rel=1e-12)


def test_views_null_compares_each_view_with_the_others_at_a_test_scale():
    gen = torch.Generator().manual_seed(9)
    tiles = torch.randn(3, 8, 8, 6, generator=gen) + 2.0
    assert views_null(tiles[:1]) is None
    each = [TokenGaussian.fit(TokenMoments.of(torch.cat([tiles[:i], tiles[i + 1:]]))).mean_shift(tiles[i])
            for i in range(3)]
    assert views_null(tiles) == pytest.approx(2 * 2 / 9 * sum(each) / 3, rel=1e-12)


def test_one_tiled_reference_whose_places_differ_drops_the_mean_token():
    """With one reference, the tiles of a long part stand in for parts: tiles that differ globally (the
    light changes along the part) say the mean token varies with no defect; tiles of one texture do not."""
    gen = torch.Generator().manual_seed(10)
    texture = torch.randn(1, 10, 10, 16, generator=gen) + 1.0
    same = texture + 0.05 * torch.randn(3, 10, 10, 16, generator=gen)  # the texture again at each place
    lit = same.clone()
    for i in range(3):
        lit[i, ..., :4] += 1.0 * i
    assert fitted([same]).parts_differ() is False
    assert fitted([lit]).parts_differ() is True


def weave(height: int, width: int, phase: int = 0, seed: int = 0) -> np.ndarray:
    """A checker weave of period 8 px with a little noise, shifted by ``phase`` pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.arange(height)[:, None] + phase, np.arange(width)[None, :] + phase
    grey = 128 + 60 * np.sign(np.sin(2 * np.pi * x / 8) * np.sin(2 * np.pi * y / 8))
    grey = grey[..., None] + rng.normal(0, 4, (height, width, 1))
    return np.clip(np.repeat(grey, 3, 2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(64, 64), (64, 256)])
def test_the_aliasing_check_shifts_by_a_quarter_token_of_one_tile(shape):
    """A weave near the stride must not flag a good part shifted by two pixels, tiled or not: the check's
    crops are a quarter token apart, a token measured on one view (a tile), not on the whole long image."""
    from vandal.detector import Detector

    detector = Detector(image_size=128, progress=False, device="cpu", distribution="on").fit([weave(*shape)])
    assert len(detector.embedder_.views(weave(*shape))[0]) == shape[1] // shape[0]  # one view, or 4 tiles
    scores = [detector.predict(weave(*shape, phase=p, seed=5))[0].distribution_score for p in (0, 2, 4)]
    assert max(scores) < 0.5, scores
