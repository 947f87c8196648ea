"""Zero-shot mutual comparison (Multi-Scale Memory Comparison): text-free, reference-free.

An object unlike its siblings is anomalous: every object of a test image is scored against the
*other* objects of the same image, exactly as a memory bank would score it against references
(nearest cosine distance per tap, averaged over neighbourhood scales, upsampled, summed over taps).
The same maths with whole images as the groups compares each test image with the other images of
the batch: that form is **transductive** (one image's score depends on the other test images).

MuSc (Li et al., ICLR 2024) is the batch form with its own features and aggregation
(``scoring="musc"``, docs/text-free.md): each tap LayerNormed over the whole image, neighbourhoods
averaged with zero padding (LNAMD), Euclidean distance of unit vectors, and each token's nearest
distances to every other image averaged over the lowest fraction of them (MSM); image scores are
then re-scored over a k-nearest graph of global features (RsCIN, :func:`rescore`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..memory.maps import sum_over_taps
from ..memory.pooling import pool_neighbourhood

QUERY_CHUNK = 1024  # query rows per similarity block
KEY_CHUNK = 8192  # key columns per block: blocks of 1024 x 8192 floats (32 MiB) whatever the batch size
MUSC_LOWEST = 0.3  # MSM: the lowest 30% of a token's per-image nearest distances are averaged
MUSC_RESCORE = (1, 2, 3)  # RsCIN's k on MVTec AD


def nearest_other_group(tokens: torch.Tensor, groups: torch.Tensor, query_chunk: int = QUERY_CHUNK,
                        keys: torch.Tensor | None = None, key_groups: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest cosine distance of every token to the tokens of *other* groups.

    tokens ``[N, h, w, C]``; groups ``[N]`` integer labels (items sharing a label never match each
    other, e.g. the views of one image). keys ``[M, h', w', C]`` with key_groups ``[M]``: compare
    against these instead of the queries themselves (e.g. extra poses of each object). Returns
    ``[N, h, w]``; a token with no other group to compare with gets 0.
    """
    n, h, w, c = tokens.shape
    flat = F.normalize(tokens.reshape(-1, c).float(), dim=-1)
    owner = groups.to(flat.device).repeat_interleave(h * w)
    if keys is None:
        key_flat, key_owner = flat, owner
    else:
        if key_groups is None:
            raise ValueError("keys need key_groups")
        key_flat = F.normalize(keys.reshape(-1, c).float(), dim=-1)
        key_owner = key_groups.to(flat.device).repeat_interleave(keys.shape[1] * keys.shape[2])
    best = torch.full((flat.shape[0],), -2.0, device=flat.device)
    # Blocks over queries and keys bound memory for any batch size (a transductive batch of 100 CLIP
    # images holds ~137k tokens); within a block the maths is one matmul.
    for start in range(0, flat.shape[0], query_chunk):
        rows = slice(start, start + query_chunk)
        for key_start in range(0, key_flat.shape[0], KEY_CHUNK):
            cols = slice(key_start, key_start + KEY_CHUNK)
            sim = flat[rows] @ key_flat[cols].T
            same = owner[rows, None] == key_owner[None, cols]
            best[rows] = torch.maximum(best[rows], sim.masked_fill(same, -2.0).amax(dim=1))
    # No other group at all (-2 everywhere): nothing to compare with, not an anomaly.
    distance = torch.where(best <= -1.5, torch.zeros_like(best), 1.0 - best).clamp_min(0.0)
    return distance.reshape(n, h, w)


def mutual_maps(taps: Sequence[torch.Tensor], groups: torch.Tensor, size: int,
                neighbourhood: Sequence[int] = (3,), key_taps: Sequence[torch.Tensor] | None = None,
                key_groups: torch.Tensor | None = None, step: Callable[[], object] | None = None) -> torch.Tensor:
    """Tap grids ``[N, h_t, w_t, C_t]`` of N items -> maps ``[N, size, size]``: per tap, the mean over
    neighbourhood scales of the distance to the other groups (of ``key_taps`` when given),
    upsampled and summed over taps. step: called after each (tap, scale) comparison (progress)."""
    def distance(t: int, grid: torch.Tensor, r: int) -> torch.Tensor:
        keys = None if key_taps is None else pool_neighbourhood(key_taps[t], r)
        return nearest_other_group(pool_neighbourhood(grid, r), groups, keys=keys, key_groups=key_groups)

    return _over_taps_and_scales(taps, neighbourhood, size, distance, step)


def _over_taps_and_scales(taps: Sequence[torch.Tensor], neighbourhood: Sequence[int], size: int,
                          distance: Callable[[int, torch.Tensor, int], torch.Tensor],
                          step: Callable[[], object] | None) -> torch.Tensor:
    """``distance(tap index, grid, r)`` ``[N, h_t, w_t]`` averaged over the neighbourhood scales r of each
    tap, upsampled and summed over taps; ``step`` after each (tap, scale) comparison."""
    grids = []
    for t, grid in enumerate(taps):
        per_scale = []
        for r in neighbourhood:
            per_scale.append(distance(t, grid, r))
            if step is not None:
                step()
        grids.append(torch.stack(per_scale).mean(0))
    return sum_over_taps(grids, size)


def mutual_object_maps(taps: Sequence[torch.Tensor], size: int, neighbourhood: Sequence[int] = (3,),
                       turned_taps: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """The N object crops of **one** image, taps ``[N, h, w, C]`` -> ``[N, size, size]``: each object
    compared with its siblings only. Fewer than two objects: all zeros (no sibling to compare).

    turned_taps: the same crops turned by 180 degrees (aligned crops, whose axis has no direction);
    they join each sibling's keys, so a sibling lying the other way round still matches.
    """
    groups = torch.arange(taps[0].shape[0])
    if turned_taps is None:
        return mutual_maps(taps, groups, size, neighbourhood)
    keys = [torch.cat([a, b]) for a, b in zip(taps, turned_taps)]
    return mutual_maps(taps, groups, size, neighbourhood, keys, groups.repeat(2))


def mutual_batch_maps(taps: Sequence[torch.Tensor], image_index: torch.Tensor, size: int,
                      neighbourhood: Sequence[int] = (3,), scoring: str = "nearest",
                      lowest: float = MUSC_LOWEST, step: Callable[[], object] | None = None) -> torch.Tensor:
    """TRANSDUCTIVE: the views of a batch of test images, taps ``[V, h, w, C]`` and the image each
    view belongs to ``[V]`` -> ``[V, size, size]``, every view compared with the *other test images*.
    Scores depend on the batch: a defect shared by most images of the batch goes unseen.

    scoring: ``nearest`` (the nearest cosine distance over all other images) or ``musc`` (MuSc's
    LayerNorm, LNAMD and MSM with the ``lowest`` fraction of the other images; see the module docstring).
    step: called after each of the ``len(taps) x len(neighbourhood)`` all-pairs comparisons (progress).
    """
    if scoring == "nearest":
        return mutual_maps(taps, image_index, size, neighbourhood, step=step)
    if scoring != "musc":
        raise ValueError(f"mutual scoring must be nearest or musc, got {scoring!r}")
    normed = [F.layer_norm(grid, tuple(grid.shape[1:])) for grid in taps]  # once per tap, for every r

    def distance(t: int, grid: torch.Tensor, r: int) -> torch.Tensor:
        return lowest_mean(group_distances(lnamd(normed[t], r), image_index), lowest)

    return _over_taps_and_scales(taps, neighbourhood, size, distance, step)


# ------------------------------------------------------------------ MuSc


def lnamd(grid: torch.Tensor, r: int) -> torch.Tensor:
    """MuSc's local neighbourhood aggregation ``[N, h, w, C]`` -> ``[N, h, w, C]``: the mean of each
    token's r x r neighbourhood with zero padding counted (PatchCore's unfold + mean mapper)."""
    if r < 1 or r % 2 == 0:
        raise ValueError(f"neighbourhood size must be odd and >= 1, got {r}")
    if r == 1:
        return grid
    pooled = F.avg_pool2d(grid.permute(0, 3, 1, 2), r, stride=1, padding=r // 2, count_include_pad=True)
    return pooled.permute(0, 2, 3, 1)


def group_distances(tokens: torch.Tensor, groups: torch.Tensor, query_chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """Euclidean distance of every L2-normalised token to the nearest token of **each** group.

    tokens ``[N, h, w, C]``; groups ``[N]`` labels ``0..G-1`` (the image of each view) -> ``[N, h, w, G]``,
    ``inf`` for a token's own group. Blocks of whole views bound memory as in :func:`nearest_other_group`;
    the nearest token of each view comes first, then of each group (a view's tokens are contiguous).
    """
    n, h, w, c = tokens.shape
    count = int(groups.max()) + 1
    flat = F.normalize(tokens.reshape(-1, c).float(), dim=-1)
    groups = groups.to(flat.device)
    views_per_block = max(1, KEY_CHUNK // (h * w))
    best_view = torch.empty(flat.shape[0], n, device=flat.device)
    for start in range(0, flat.shape[0], query_chunk):
        rows = slice(start, start + query_chunk)
        for first in range(0, n, views_per_block):
            last = min(n, first + views_per_block)
            sim = flat[rows] @ flat[first * h * w:last * h * w].T
            best_view[rows, first:last] = sim.reshape(sim.shape[0], last - first, h * w).amax(-1)
    best = torch.full((flat.shape[0], count), -2.0, device=flat.device)
    best = best.scatter_reduce(1, groups.expand(flat.shape[0], -1), best_view, reduce="amax")
    distance = (2.0 - 2.0 * best).clamp_min(0.0).sqrt()  # |a - b| of unit vectors
    own = groups.repeat_interleave(h * w)[:, None] == torch.arange(count, device=flat.device)[None]
    return distance.masked_fill(own, float("inf")).reshape(n, h, w, count)


def lowest_mean(distances: torch.Tensor, fraction: float) -> torch.Tensor:
    """MSM: ``[N, h, w, G]`` per-group distances -> ``[N, h, w]``, the mean of each token's lowest
    ``int(fraction * (G - 1))`` distances to the *other* groups (at least one)."""
    others = distances.shape[-1] - 1
    if others < 1:
        return torch.zeros(distances.shape[:-1], device=distances.device)
    k = max(1, int(others * fraction))
    return distances.topk(k, dim=-1, largest=False).values.mean(-1)


def rescore(scores: torch.Tensor, features: torch.Tensor, ks: Sequence[int] = MUSC_RESCORE) -> torch.Tensor:
    """RsCIN: image scores ``[N]`` smoothed over the k-nearest graph of global features ``[N, D]``.

    Scores are min-max normalised, each image's score replaced by the similarity-weighted mean over
    its k most similar images (itself included), averaged over ``ks``, and mapped back to the raw range
    (a monotone change of units, so the heuristic decision level still applies).
    """
    low, high = scores.min(), scores.max()
    if len(scores) < 2 or float(high - low) <= 0:
        return scores
    unit = (scores - low) / (high - low)
    feats = F.normalize(features.float(), dim=-1)
    similarity = feats @ feats.T
    out = []
    for k in ks:
        keep = similarity.topk(min(k, len(scores)), dim=1).indices
        weights = torch.zeros_like(similarity).scatter(1, keep, similarity.gather(1, keep))
        out.append((weights / weights.sum(1, keepdim=True)) @ unit)
    return low + (high - low) * torch.stack(out).mean(0)
