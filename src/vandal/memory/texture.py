"""Is the product a texture, and which augmented views keep it the same texture? Decided from the
references themselves, not a user flag.

Stationarity: on a texture the mean token of a region does not depend on where the region is; on an
object it does. Cut a reference's token grid (its first tap, border tokens dropped: padding makes
them differ everywhere) into ``cells x cells`` cells and compare the variance of the cell means with
what tokens drawn at random would give (the token variance / tokens per cell): the ratio is ~1 for
white noise, ~1.5-3 on the simulated textile and a woven texture, 7-11 on scattered capsules and
~27 on MVTec bottle (EfficientNet-Lite2, stride 8, 320 px). A texture is a median ratio below
:data:`TEXTURE_LIMIT`.

Invariance: a view (rotation, shift, flip) keeps a texture the same texture when its tokens find
matches elsewhere in the reference (leave-neighbourhood-out, see memory.held_out) about as well as
the reference's own tokens do. The simulated textile keeps shifts and small rotations but not flips
(its streaks run one way); a square weave keeps flips and shifts but not rotations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .augment import Transform
from .held_out import leave_neighbourhood_out_distance, token_sources

CELLS = 4
BORDER = 1  # tokens dropped at each edge before the test
MIN_CELL_TOKENS = 4  # fewer tokens a side per cell and any image looks stationary (capsule scenes at 64 px: 1.0)
TEXTURE_LIMIT = 5.0  # stationarity ratio: textures measured <= 3, objects and scenes >= 7
INVARIANCE_LIMIT = 1.25  # a view's held-out distance at most 25% above the identity's
NEIGHBOURHOOD_RADIUS = 0.2  # normalised units (2 = the image side), as the k = 1 calibration


def stationarity_ratio(grid: torch.Tensor, cells: int = CELLS, border: int = BORDER) -> float:
    """``[h, w, C]`` token grid -> variance of cell means / (token variance / tokens per cell)."""
    if grid.ndim != 3:
        raise ValueError(f"expected a token grid [h, w, C], got {tuple(grid.shape)}")
    x = grid[border: grid.shape[0] - border, border: grid.shape[1] - border] if border else grid
    h, w, c = x.shape
    if h < cells * MIN_CELL_TOKENS or w < cells * MIN_CELL_TOKENS:
        raise ValueError(f"a {h} x {w} grid (after a {border}-token border) cannot hold {cells} x {cells} cells "
                         f"of {MIN_CELL_TOKENS} x {MIN_CELL_TOKENS} tokens")
    x = F.normalize(x[: h // cells * cells, : w // cells * cells].double(), dim=-1)
    cell_means = x.reshape(cells, h // cells, cells, w // cells, c).mean(dim=(1, 3)).reshape(-1, c)
    between = cell_means.var(dim=0, unbiased=False).sum()
    total = x.reshape(-1, c).var(dim=0, unbiased=False).sum()
    per_cell = (h // cells) * (w // cells)
    return float(between / total.clamp_min(1e-12) * per_cell)


def is_texture(grids: torch.Tensor | Sequence[torch.Tensor], limit: float = TEXTURE_LIMIT) -> bool:
    """Reference grids ``[k, h, w, C]`` (first tap) -> True when their median stationarity ratio is below ``limit``."""
    ratios = torch.tensor([stationarity_ratio(g) for g in grids])
    return bool(ratios.median() < limit)


def invariance_ratios(identity: torch.Tensor, views: Sequence[torch.Tensor], transforms: Sequence[Transform],
                      radius: float = NEIGHBOURHOOD_RADIUS) -> list[float]:
    """How well each transformed view of one reference matches the reference elsewhere.

    identity: ``[h, w, C]`` tokens of the reference; views: ``[h, w, C]`` tokens of each transformed
    view. Returns per view: mean leave-neighbourhood-out distance of the view's tokens to the identity
    tokens / the same for the identity's own tokens (1 = as good as the texture's own parts).
    """
    h, w, c = identity.shape
    bank = F.normalize(identity.reshape(-1, c).float(), dim=-1)
    owner = torch.zeros(h * w, dtype=torch.long, device=bank.device)
    sources = token_sources(Transform(), h, w).reshape(-1, 2).to(bank.device)
    base = leave_neighbourhood_out_distance(bank, sources, 0, bank, owner, sources, radius).mean()
    ratios = []
    for view, transform in zip(views, transforms, strict=True):
        queries = F.normalize(view.reshape(-1, c).float(), dim=-1)
        where = token_sources(transform, h, w).reshape(-1, 2).to(bank.device)
        held_out = leave_neighbourhood_out_distance(queries, where, 0, bank, owner, sources, radius).mean()
        ratios.append(float(held_out / base.clamp_min(1e-12)))
    return ratios


def invariant_transforms(ratios: Sequence[Sequence[float]], transforms: Sequence[Transform],
                         limit: float = INVARIANCE_LIMIT) -> list[Transform]:
    """Transforms whose median ratio over the references (``ratios[reference][view]``) is within ``limit``;
    the identity always stays first."""
    kept = [Transform()]
    for j, transform in enumerate(transforms):
        if transform == Transform():
            continue
        values = torch.tensor([r[j] for r in ratios])
        if float(values.median()) <= limit:
            kept.append(transform)
    return kept
