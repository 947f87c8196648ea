import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vandal.memory.augment import Transform, apply_transform, paper_transforms
from vandal.memory.held_out import (
    leave_neighbourhood_out_distance,
    leave_one_out_distance,
    neighbourhood_mask,
    token_sources,
)


@pytest.mark.parametrize("transform", paper_transforms() + [Transform(angle=0.3, shift_x=0.2, flip_h=True)],
                         ids=lambda t: t.name())
def test_token_sources_invert_the_augmentation(transform):
    # An image whose red / green channels encode x / y: after the transform, each token centre's
    # colour says where its pixel came from.
    size, grid = 160, 20
    y, x = np.mgrid[0:size, 0:size]
    coded = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), np.zeros_like(x)], -1).astype(np.uint8)
    view = apply_transform(coded, transform)
    centres = np.arange(grid) * (size // grid) + size // grid // 2
    seen = view[centres][:, centres][..., :2].astype(np.float64) / 255 * 2 - 1
    assert np.abs(seen - token_sources(transform, grid, grid).numpy()).max() < 0.03


def brute_nearest(queries, bank, allowed):
    sims = queries @ bank.T
    sims[~allowed] = -math.inf
    best = sims.max(dim=1).values
    return torch.where(torch.isfinite(best), 1 - best, torch.ones_like(best)).clamp_min(0)


def random_bank(seed: int, rows: int = 300, dim: int = 8, owners: int = 3):
    gen = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(rows, dim, generator=gen), dim=-1)
    owner = torch.randint(owners, (rows,), generator=gen)
    sources = torch.rand(rows, 2, generator=gen) * 2 - 1
    queries = F.normalize(torch.randn(90, dim, generator=gen), dim=-1)
    query_sources = torch.rand(90, 2, generator=gen) * 2 - 1
    return queries, query_sources, bank, owner, sources


def test_leave_one_out_equals_brute_force():
    queries, _, bank, owner, _ = random_bank(0)
    got = leave_one_out_distance(queries, bank, owner, left_out=1)
    allowed = (owner != 1)[None, :].expand(len(queries), -1)
    assert torch.allclose(got, brute_nearest(queries, bank, allowed), atol=1e-6)
    with pytest.raises(ValueError, match="two references"):
        leave_one_out_distance(queries, bank, torch.zeros_like(owner), left_out=0)


@pytest.mark.parametrize("precomputed", [False, True])
def test_leave_neighbourhood_out_equals_brute_force(precomputed):
    queries, query_sources, bank, owner, sources = random_bank(1)
    radius = 0.5
    near = neighbourhood_mask(query_sources, sources[owner == 2], radius) if precomputed else None
    got = leave_neighbourhood_out_distance(queries, query_sources, 2, bank, owner, sources, radius, near)
    close = (query_sources[:, None, :] - sources[None, :, :]).abs().amax(-1) < radius
    allowed = ~(close & (owner == 2)[None, :])
    assert torch.allclose(got, brute_nearest(queries, bank, allowed), atol=1e-6)


def test_a_token_never_matches_itself_and_an_empty_choice_is_orthogonal():
    gen = torch.Generator().manual_seed(2)
    tokens = F.normalize(torch.randn(16, 4, generator=gen), dim=-1)
    sources = token_sources(Transform(), 4, 4).reshape(-1, 2)
    owner = torch.zeros(16, dtype=torch.long)
    small = leave_neighbourhood_out_distance(tokens, sources, 0, tokens, owner, sources, radius=0.1)
    assert float(small.min()) > 1e-3  # its own copy is left out
    everything = leave_neighbourhood_out_distance(tokens, sources, 0, tokens, owner, sources, radius=5.0)
    assert torch.allclose(everything, torch.ones(16))
    with pytest.raises(ValueError, match="radius"):
        leave_neighbourhood_out_distance(tokens, sources, 0, tokens, owner, sources, radius=0.0)
