"""Held-out nearest-neighbour distances for calibration, from one bank with row provenance.

Calibration needs the distances a *new* normal image would get. With k >= 2 references each
reference is scored against the bank rows of the others (leave-one-out); with one reference each
token is scored against the bank rows that do not come from near its own place in the image
(leave-neighbourhood-out: on a texture another part of the same image supplies the match; on an
object a unique part finds none, which keeps the threshold high rather than wrong). Both reuse the
fitted bank and the references' tokens: nothing is re-embedded and no bank is rebuilt per fold.

Provenance of a bank row: ``owner`` (which reference it came from) and ``source`` (where its token
centre lies in the owner's own, untransformed frame, as normalised ``(x, y)`` in [-1, 1]), so
augmented views (rotations, shifts, flips) are traced back to the pixels they show.
"""

from __future__ import annotations

import math

import torch

from .augment import Transform
from .bank import nearest_cosine_distance

QUERY_BLOCK, BANK_BLOCK = 256, 4096  # a 4 MiB similarity block and its mask


def _reflect(u: torch.Tensor) -> torch.Tensor:
    """Normalised coordinates outside [-1, 1] folded back, as grid_sample's reflection padding."""
    return 1.0 - torch.abs(torch.remainder(u + 1.0, 4.0) - 2.0)


def token_sources(transform: Transform, height: int, width: int, aspect: float = 1.0) -> torch.Tensor:
    """Where each token centre of a transformed view comes from in the untransformed image.

    height, width: the token grid; aspect: image width / height (1 for the square inputs).
    Returns ``[height, width, 2]`` normalised ``(x, y)`` in [-1, 1], inverting
    :func:`vandal.memory.augment.apply_transform` (flips, then rotation and shift, reflection).
    """
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    cos, sin = math.cos(transform.angle), math.sin(transform.angle)
    # affine_grid maps output (x, y) to input coordinates with theta (see apply_transform).
    x_in = _reflect(cos * x - sin / aspect * y - 2 * transform.shift_x)
    y_in = _reflect(sin * aspect * x + cos * y - 2 * transform.shift_y)
    if transform.flip_h:
        x_in = -x_in
    if transform.flip_v:
        y_in = -y_in
    return torch.stack([x_in, y_in], dim=-1).float()


def _masked_nearest(queries: torch.Tensor, bank: torch.Tensor, excluded) -> torch.Tensor:
    """``min (1 - cos)`` over the bank rows that ``excluded(q_slice, m_slice) -> bool [q, m]`` leaves in.

    queries ``[Q, C]``, bank ``[M, C]`` L2-normalised. A query with every row excluded gets 1.0
    (orthogonal), never a false zero.
    """
    best = torch.full((queries.shape[0],), -2.0, dtype=queries.dtype, device=queries.device)
    bank_t = bank.T.contiguous()
    for qs in range(0, queries.shape[0], QUERY_BLOCK):
        q = slice(qs, min(qs + QUERY_BLOCK, queries.shape[0]))
        for ms in range(0, bank.shape[0], BANK_BLOCK):
            m = slice(ms, min(ms + BANK_BLOCK, bank.shape[0]))
            sim = (queries[q] @ bank_t[:, m]).masked_fill_(excluded(q, m), -2.0)
            torch.maximum(best[q], sim.amax(dim=1), out=best[q])
    best = torch.where(best > -2.0, best, torch.zeros_like(best))
    return (1.0 - best).clamp_min_(0.0)


def leave_one_out_distance(queries: torch.Tensor, bank: torch.Tensor, owner: torch.Tensor,
                           left_out: int) -> torch.Tensor:
    """Nearest cosine distance of reference ``left_out``'s tokens to the other references' rows.

    queries ``[Q, C]`` and bank ``[M, C]`` L2-normalised; owner ``[M]`` reference index per row.
    Returns ``[Q]``. Raises when no row belongs to another reference (k = 1).
    """
    others = owner != left_out
    if not bool(others.any()):
        raise ValueError("leave-one-out needs rows from at least two references; use leave_neighbourhood_out "
                         "with a single reference")
    # A row mask is a row selection: the plain chunked search on the other references' rows.
    return nearest_cosine_distance(queries, bank[others])


def neighbourhood_mask(query_sources: torch.Tensor, sources: torch.Tensor, radius: float) -> torch.Tensor:
    """``[Q, M]`` bool: row m lies within ``radius`` (Chebyshev, normalised units) of query q's source.

    Precompute it once when many images share the query positions (held-out references and
    synthetic defects all use the identity token grid)."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0 (normalised units, 2 = the image side), got {radius}")
    return (query_sources[:, None, :] - sources[None, :, :]).abs().amax(dim=-1) < radius


def leave_neighbourhood_out_distance(queries: torch.Tensor, query_sources: torch.Tensor, query_owner: int,
                                     bank: torch.Tensor, owner: torch.Tensor, sources: torch.Tensor,
                                     radius: float, near: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest cosine distance of each token to the bank, leaving out the rows of its own reference
    whose source lies within ``radius`` (Chebyshev, normalised units: 2 = the image side) of it.

    queries ``[Q, C]`` with query_sources ``[Q, 2]``; bank ``[M, C]`` with owner ``[M]`` and
    sources ``[M, 2]``. near: optional precomputed :func:`neighbourhood_mask` of the query sources
    against the rows of ``query_owner`` (``[Q, M_own]``). Returns ``[Q]``.
    """
    if radius <= 0:
        raise ValueError(f"radius must be > 0 (normalised units, 2 = the image side), got {radius}")
    own = owner == query_owner
    if not bool(own.any()):
        return nearest_cosine_distance(queries, bank)
    # Rows of other references are never excluded: search them plainly, and only the own rows with a mask.
    others = nearest_cosine_distance(queries, bank[~own]) if bool((~own).any()) else None
    own_rows, own_sources = bank[own], sources[own]
    if near is None:
        def excluded(q: slice, m: slice) -> torch.Tensor:
            return (query_sources[q, None, :] - own_sources[None, m, :]).abs().amax(dim=-1) < radius
    else:
        if near.shape != (queries.shape[0], own_rows.shape[0]):
            raise ValueError(f"near must be [Q, M_own] = {(queries.shape[0], own_rows.shape[0])}, got {tuple(near.shape)}")

        def excluded(q: slice, m: slice) -> torch.Tensor:
            return near[q, m]

    mine = _masked_nearest(queries, own_rows, excluded)
    return mine if others is None else torch.minimum(mine, others)
