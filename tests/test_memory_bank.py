import pytest
import torch
import torch.nn.functional as F

from vandal.memory.bank import MemoryBank, nearest_cosine_distance
from vandal.memory.pooling import pool_neighbourhood


def brute_force(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    q = queries / queries.norm(dim=1, keepdim=True)
    b = bank / bank.norm(dim=1, keepdim=True)
    out = torch.empty(len(q))
    for i in range(len(q)):
        out[i] = min(1 - float(q[i] @ b[j]) for j in range(len(b)))
    return out


def test_distances_equal_brute_force():
    gen = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(37, 16, generator=gen), torch.randn(53, 16, generator=gen)
    got = nearest_cosine_distance(F.normalize(queries, dim=1), F.normalize(bank, dim=1))
    assert torch.allclose(got, brute_force(queries, bank).clamp_min(0), atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_equals_unchunked(chunk):
    gen = torch.Generator().manual_seed(1)
    queries = F.normalize(torch.randn(301, 24, generator=gen), dim=1)
    bank = F.normalize(torch.randn(257, 24, generator=gen), dim=1)
    full = nearest_cosine_distance(queries, bank, chunk_elements=1 << 30)
    # Different block shapes may round the dot products differently; the minimum itself is exact.
    assert torch.allclose(nearest_cosine_distance(queries, bank, chunk_elements=chunk), full, atol=1e-6)


@pytest.mark.parametrize("blocks", [(None, 4096), (None, 7), (3, 5)])
def test_graph_blocks_equal_the_default(blocks):
    """The ONNX graph searches all queries at once over bank blocks (query block None): same distances."""
    gen = torch.Generator().manual_seed(2)
    queries = F.normalize(torch.randn(301, 24, generator=gen), dim=1)
    bank = F.normalize(torch.randn(257, 24, generator=gen), dim=1)
    full = nearest_cosine_distance(queries, bank)
    assert torch.allclose(nearest_cosine_distance(queries, bank, blocks=blocks), full, atol=1e-6)
    grid = MemoryBank(bank, blocks=blocks).distance_grid(queries.reshape(7, 43, 1, 24))
    assert torch.allclose(grid.reshape(-1), full, atol=1e-6)


def test_bank_grid_shapes_and_self_distance_zero():
    gen = torch.Generator().manual_seed(2)
    grid = torch.randn(2, 5, 6, 8, generator=gen)
    bank = MemoryBank(dim=8)
    bank.add(grid)
    assert len(bank) == 60
    distances = bank.distance_grid(grid)
    assert distances.shape == (2, 5, 6)
    assert float(distances.abs().max()) < 1e-5


def test_bank_rejects_wrong_width_and_empty():
    bank = MemoryBank(dim=8)
    with pytest.raises(ValueError, match="empty"):
        bank.distance_grid(torch.randn(1, 2, 2, 8))
    bank.add(torch.randn(4, 8))
    with pytest.raises(ValueError, match="width"):
        bank.distance_grid(torch.randn(1, 2, 2, 9))
    with pytest.raises(ValueError, match=r"\[B, h, w, C\]"):
        bank.distance_grid(torch.randn(4, 8))


def test_pool_neighbourhood_matches_loop_and_keeps_borders():
    grid = torch.arange(2 * 4 * 5 * 3, dtype=torch.float32).reshape(2, 4, 5, 3)
    pooled = pool_neighbourhood(grid, 3)
    for y in range(4):
        for x in range(5):
            window = grid[:, max(0, y - 1): y + 2, max(0, x - 1): x + 2]
            assert torch.allclose(pooled[:, y, x], window.mean(dim=(1, 2)))
    assert torch.equal(pool_neighbourhood(grid, 1), grid)
    with pytest.raises(ValueError):
        pool_neighbourhood(grid, 2)


def test_bank_follows_the_tokens_device_and_caches_its_transpose():
    bank = MemoryBank(dim=4)
    tokens = torch.randn(1, 2, 2, 4)
    bank.add(tokens)
    first = bank.distance_grid(tokens)
    cached = bank._transposed
    assert cached is not None and torch.equal(bank.distance_grid(tokens), first)
    assert bank._transposed is cached  # reused, not rebuilt per call
    bank.add(torch.randn(3, 4))
    assert bank._transposed is None and len(bank) == 7
