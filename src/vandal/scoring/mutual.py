"""Zero-shot mutual comparison (Multi-Scale Memory Comparison): text-free, reference-free.

An object unlike its siblings is anomalous: every object of a test image is scored against the
*other* objects of the same image, exactly as a memory bank would score it against references
(nearest cosine distance per tap, averaged over neighbourhood scales, upsampled, summed over taps).
The same maths with whole images as the groups compares each test image with the other images of
the batch: that form is **transductive** (one image's score depends on the other test images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..memory.maps import sum_over_taps
from ..memory.pooling import pool_neighbourhood

QUERY_CHUNK = 1024  # query rows per similarity block
KEY_CHUNK = 8192  # key columns per block: blocks of 1024 x 8192 floats (32 MiB) whatever the batch size


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
                key_groups: torch.Tensor | None = None) -> torch.Tensor:
    """Tap grids ``[N, h_t, w_t, C_t]`` of N items -> maps ``[N, size, size]``: per tap, the mean over
    neighbourhood scales of the distance to the other groups (of ``key_taps`` when given),
    upsampled and summed over taps."""
    return sum_over_taps((torch.stack([
        nearest_other_group(pool_neighbourhood(grid, r), groups,
                            keys=None if key_taps is None else pool_neighbourhood(key_taps[t], r),
                            key_groups=key_groups)
        for r in neighbourhood]).mean(0) for t, grid in enumerate(taps)), size)


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
                      neighbourhood: Sequence[int] = (3,)) -> torch.Tensor:
    """TRANSDUCTIVE: the views of a batch of test images, taps ``[V, h, w, C]`` and the image each
    view belongs to ``[V]`` -> ``[V, size, size]``, every view compared with the *other test images*.
    Scores depend on the batch: a defect shared by most images of the batch goes unseen."""
    return mutual_maps(taps, image_index, size, neighbourhood)
