"""Greedy k-centre coreset: the k-centre bound, rare rows kept, exact rounds, groups kept in order."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from vandal.memory.coreset import OVERSAMPLE, greedy_k_centre, reduce_grouped, reference_share


def radius(points: torch.Tensor, centres: torch.Tensor) -> float:
    """Largest distance from a point to its nearest centre (the k-centre objective)."""
    return float(torch.cdist(points, centres).min(dim=1).values.max())


def test_greedy_is_within_twice_the_optimal_radius():
    gen = torch.Generator().manual_seed(0)
    points = F.normalize(torch.randn(12, 3, generator=gen), dim=-1)
    best = min(radius(points, points[list(c)]) for c in itertools.combinations(range(12), 3))
    chosen = greedy_k_centre(points, 3)
    assert radius(points, points[chosen]) <= 2 * best + 1e-6


def test_greedy_keeps_the_outliers_a_random_subset_drops():
    gen = torch.Generator().manual_seed(1)
    bulk = F.normalize(torch.randn(500, 2, generator=gen) * 0.05 + torch.tensor([1.0, 0.0]), dim=-1)
    outliers = F.normalize(torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]), dim=-1)
    points = torch.cat([bulk, outliers])
    chosen = set(greedy_k_centre(points, 6).tolist())
    assert {500, 501, 502} <= chosen  # a rare normal pattern stays in the memory


def test_indices_are_sorted_unique_and_budget_capped():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=gen)
    idx = greedy_k_centre(x, 10, projection=2)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10 and torch.equal(idx, torch.sort(idx).values)
    assert torch.equal(greedy_k_centre(x, 80), torch.arange(50))
    with pytest.raises(ValueError):
        greedy_k_centre(x, 0)


def sequential_greedy(features: torch.Tensor, budget: int, seed: int = 0) -> torch.Tensor:
    """The textbook loop: one centre per step, every row updated each time."""
    x = F.normalize(features.float(), dim=-1)
    first = int(torch.randint(len(x), (1,), generator=torch.Generator().manual_seed(seed)))
    chosen, nearest = [first], ((x - x[first]) ** 2).sum(1)
    while len(chosen) < budget:
        j = int(torch.argmax(nearest))
        chosen.append(j)
        nearest = torch.minimum(nearest, ((x - x[j]) ** 2).sum(1))
    return torch.sort(torch.tensor(chosen)).values


@pytest.mark.parametrize("block", [4, 32, 256])
def test_rounds_pick_exactly_what_the_textbook_loop_picks(block):
    x = torch.randn(700, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(greedy_k_centre(x, 120, block=block), sequential_greedy(x, 120))


def test_reduce_grouped_counts_each_owner_and_keeps_their_order():
    gen = torch.Generator().manual_seed(5)
    groups = [torch.randn(n, 4, generator=gen) * 0.3 + 3 * torch.eye(4)[i] for i, n in enumerate((40, 7, 60))]
    features = torch.cat(groups)
    index, counts = reduce_grouped(features, [40, 7, 60], budget=20)
    kept = features[index]
    assert torch.equal(index, torch.sort(index).values) and kept.shape == (20, 4) and sum(counts) == 20 and min(counts) > 0  # three far-apart clusters all kept
    start = 0
    for group, count in zip(groups, counts, strict=True):
        for row in kept[start: start + count]:
            assert torch.isclose(group, row).all(dim=1).any(), "a kept row sits among another owner's rows"
        start += count
    with pytest.raises(ValueError, match="group sizes"):
        reduce_grouped(features, [40, 7], budget=20)


def test_reference_shares_fall_with_the_index_and_never_exceed_the_rows():
    assert reference_share(100, 0, 1000) == OVERSAMPLE * 100
    assert reference_share(100, 0, 50) == 50
    assert reference_share(100, 3, 1000) == -(-OVERSAMPLE * 100 // 4)
    assert sum(reference_share(100, j, 1000) for j in range(200)) < OVERSAMPLE * 100 * 7  # ~ ln(200) + 1 budgets


def test_a_large_memory_without_a_coreset_says_how_to_keep_predict_fast(one_thread):
    import warnings

    from vandal.detector import Detector
    from vandal.sources.memory import LARGE_MEMORY_VIEWS

    from synthetic import texture

    references = [texture(s, 64) for s in range(6)]  # 6 x 11 augmented views = 66 > LARGE_MEMORY_VIEWS
    assert LARGE_MEMORY_VIEWS < 6 * 11
    settings = dict(image_size=64, augment=True, texture="off", distribution="off", device="cpu", progress=False)
    with pytest.warns(UserWarning, match=r"memory holds 66 reference views .* --coreset 16"):
        Detector(**settings).fit(references)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Detector(**settings, coreset=16).fit(references)  # the coreset bounds it: no warning
