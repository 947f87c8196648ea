"""Image-level distribution score: how far an image's patch-token statistics lie from the references'.

A nearest-patch distance cannot see a change that affects the whole image alike (a texture woven
finer, or turned): every patch still has a near neighbour somewhere in the memory. The *mean* token
of the image moves, though. Per tap, the references' tokens (L2-normalised) define a Gaussian
(mean, covariance shrunk towards a scaled identity, OAS); an image's score is the Mahalanobis
distance of its own mean token to it:

    D(image) = (m - mu)^T  Sigma^-1  (m - mu),  m = mean of the image's tokens.

Measured on the simulated textile (global defects), the deepest tap (stride 16) separates best;
covariance statistics (KL, log-eigenvalues) rank almost as well but are dominated by estimation
noise, so they cannot be thresholded from a few references (see benchmarks/bench_textures.py).

Calibration on the references only. Each null value is D of reference tokens that were left out of
the Gaussian, scaled to the size of a test comparison (D's noise grows as 1/n_a + 1/n_b):
- leave-one-out (k >= 2): reference i against the Gaussian of the others, x (1 + 1/k) / (1 + 1/(k-1));
- split (every reference): the two diagonal pairs of quadrants against each other, x 1/2. Both
  halves touch every border, so border effects cancel. On a texture this is close to the
  leave-one-out value; on an object two halves differ far more than two whole parts do, which
  raises the level and keeps the score from firing on objects (measured on MVTec bottle);
- shift (the first reference): two crops a quarter token apart, when that is over
  :data:`ALIASING_RATIO` times its split: a periodic texture near the token stride changes its
  mean token with the phase, which one image's halves (one phase) do not show. A synthetic weave
  at k = 1 flagged every new draw without it.
The level is the mean of the null values; :meth:`DistributionModel.decisions` returns
D / (level x margin), so 1 is the decision boundary.

Sufficient statistics (count, sum, sum of outer products) per reference make each fold a
subtraction, so leave-one-out costs no refit over tokens, whatever the number of references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DUPLICATE = 1e-6  # a leave-one-out null this far below the reference's own within-image null: a copy
# The shift null replaces the split null only when it is this many times larger: the crops also differ
# in scale and borders (simulated textile: shift / split 2-3.5), while a weave aliased by the token
# stride changes its mean token with the phase (83 x).
ALIASING_RATIO = 10.0
SPLIT_SCALE = 0.5  # a split compares n/2 with n/2 tokens: twice the noise of n with n (k large)


@dataclass(frozen=True)
class TokenMoments:
    """Sufficient statistics of a token set: count, sum ``[C]``, sum of outer products ``[C, C]`` (float64)."""

    count: int
    total: torch.Tensor
    outer: torch.Tensor

    @classmethod
    def of(cls, tokens: torch.Tensor) -> TokenMoments:
        """tokens ``[..., C]`` (L2-normalised here) -> their moments."""
        x = F.normalize(tokens.reshape(-1, tokens.shape[-1]).double(), dim=-1)
        return cls(x.shape[0], x.sum(0), x.T @ x)

    def __add__(self, other: TokenMoments) -> TokenMoments:
        return TokenMoments(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def __sub__(self, other: TokenMoments) -> TokenMoments:
        return TokenMoments(self.count - other.count, self.total - other.total, self.outer - other.outer)

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.count


def oas_covariance(moments: TokenMoments) -> torch.Tensor:
    """Oracle-approximating shrinkage (Chen et al. 2010, in scikit-learn's corrected form) of the sample
    covariance towards ``trace / C * I``, from moments alone. Returns ``[C, C]`` float64."""
    n, mean = moments.count, moments.mean
    if n < 2:
        raise ValueError("a token Gaussian needs at least two tokens")
    sample = moments.outer / n - torch.outer(mean, mean)
    c = sample.shape[0]
    trace, trace_sq = torch.trace(sample), (sample * sample).sum()
    numerator = trace_sq + trace ** 2
    denominator = (n + 1) * (trace_sq - trace ** 2 / c)
    shrink = 1.0 if float(denominator) <= 0 else min(1.0, float(numerator / denominator))
    eye = torch.eye(c, dtype=sample.dtype, device=sample.device)
    return (1 - shrink) * sample + shrink * trace / c * eye


@dataclass
class TokenGaussian:
    """Mean ``[C]`` and precision ``[C, C]`` (float64) of a tap's reference tokens."""

    mean: torch.Tensor
    precision: torch.Tensor

    @classmethod
    def fit(cls, moments: TokenMoments) -> TokenGaussian:
        covariance = oas_covariance(moments)
        return cls(moments.mean, torch.linalg.inv(covariance))

    def mean_shift(self, tokens: torch.Tensor) -> float:
        """tokens ``[..., C]`` of one image (all its views) -> ``D`` of their mean token."""
        return float(self.mean_shifts(tokens.reshape(1, -1, tokens.shape[-1]))[0])

    def mean_shifts(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, N, C]`` (B images) -> ``[B]`` Mahalanobis distances of their mean tokens."""
        return self.mean_shifts_of_means(F.normalize(tokens.double(), dim=-1).mean(dim=1))

    def mean_shifts_of_means(self, means: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` mean tokens (of L2-normalised tokens) -> ``[B]`` Mahalanobis distances."""
        d = means.double() - self.mean.to(means.device)
        return shift_of_terms(d, d @ self.precision.to(means.device))


def view_terms(tokens: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens ``[B, h, w, C]`` of B views -> ``delta`` ``[B, C]`` (each view's mean L2-normalised token
    minus the references' ``mean``) and ``pdelta = delta @ precision``. Views of one size: an image's
    ``D`` is :func:`shift_of_terms` of its views' mean ``delta`` and mean ``pdelta``."""
    normalised = F.normalize(tokens, dim=-1)
    delta = normalised.reshape(normalised.shape[0], -1, normalised.shape[-1]).mean(dim=1) - mean
    return delta, delta @ precision


def shift_of_terms(delta, pdelta):
    """``D = delta . pdelta`` over the last axis (tensors or arrays, ``[..., C]`` -> ``[...]``)."""
    return (delta * pdelta).sum(-1)


def decision_of(shift, level: float, margin: float):
    """``D`` -> the decision in units of the learned level (1.0 = the decision boundary). The torch
    source, the exported graph and the ONNX runtime all decide here."""
    return shift / (level * margin)


class DistributionTerms(nn.Module):
    """taps ``T x [B, h, w, C]`` -> the deepest tap's :func:`view_terms` (float32 buffers: the
    difference of two means ~1e-3 keeps 4 digits), for an exported graph."""

    def __init__(self, gaussian: TokenGaussian):
        super().__init__()
        self.mean: torch.Tensor
        self.precision: torch.Tensor
        self.register_buffer("mean", gaussian.mean.float().cpu())
        self.register_buffer("precision", gaussian.precision.float().cpu())

    def forward(self, taps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return view_terms(taps[-1], self.mean, self.precision)


def diagonal_halves(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[h, w, C]`` -> tokens of the top-left + bottom-right quadrants, and of the other two ``[N, C]``."""
    h, w, _ = grid.shape
    ys = (torch.arange(h, device=grid.device) * 2) // h
    xs = (torch.arange(w, device=grid.device) * 2) // w
    first = (ys[:, None] + xs[None, :]) % 2 == 0
    return grid[first], grid[~first]


def split_null(grids: torch.Tensor) -> float:
    """One reference's within-image null: its diagonal halves against each other (both ways), scaled.
    ``[h, w, C]``, or ``[V, h, w, C]``: the views of one image (tiles of a long part), each halved the
    same way and the halves pooled, so the null compares half of the whole image with the other half,
    at the scale a test image's mean token (over all its views) is compared. A single tile's halves
    hold a third of a KolektorSDD image's tokens and miss how the part varies along its length (the
    README's surfaces section gives the measured difference)."""
    halves = [diagonal_halves(grid) for grid in (grids if grids.ndim == 4 else grids[None])]
    a, b = (torch.cat(parts) for parts in zip(*halves, strict=True))
    one = TokenGaussian.fit(TokenMoments.of(b)).mean_shift(a)
    other = TokenGaussian.fit(TokenMoments.of(a)).mean_shift(b)
    return SPLIT_SCALE * 0.5 * (one + other)


def shift_null(first: torch.Tensor, second: torch.Tensor) -> float:
    """Two token grids ``[..., C]`` of one image, cropped a fraction of a token apart: D of each against the other's
    Gaussian (mean of both ways). A periodic texture whose period is close to the token stride changes
    its mean token with the phase (aliasing); the split halves share one phase and miss that."""
    one = TokenGaussian.fit(TokenMoments.of(second)).mean_shift(first)
    other = TokenGaussian.fit(TokenMoments.of(first)).mean_shift(second)
    return 0.5 * (one + other)


def views_null(grids: torch.Tensor) -> float | None:
    """``[V, h, w, C]``, V >= 2 views (tiles) of one image: each view's mean token against the Gaussian of
    the other views, mean over views, rescaled to a test comparison (n / V against n (V - 1) / V tokens
    -> n against n: x 2 (V - 1) / V^2, as the split's x 1/2). The places along one long part stand in
    for whole parts when there is one reference: None for one view."""
    views = grids.shape[0]
    if views < 2:
        return None
    each = [TokenMoments.of(grid) for grid in grids]
    total = sum(each[1:], each[0])
    # each fold a subtraction of moments, as the leave-one-out folds (no refit over tokens)
    values = [float(TokenGaussian.fit(total - m).mean_shifts_of_means(m.mean[None])[0]) for m in each]
    return 2 * (views - 1) / views**2 * sum(values) / views


def loo_scale(k: int) -> float:
    """Leave-one-out compares one reference with k - 1: rescaled to a test image against all k."""
    return (1 + 1 / k) / (1 + 1 / (k - 1))


@dataclass
class ReferenceStats:
    """What the distribution model keeps of one reference: the moments of its tokens (dropped once it
    cannot be a leave-one-out fold), the mean of its L2-normalised tokens ``[C]``, its split null."""

    moments: TokenMoments | None
    mean: torch.Tensor
    split: float
    across: float | None = None  # its views against each other (views_null); None for one view

    @classmethod
    def of(cls, grids: torch.Tensor, keep_moments: bool, shifted: tuple[torch.Tensor, torch.Tensor] | None = None
           ) -> ReferenceStats:
        """grids ``[V, h, w, C]``: the reference's identity views (the split null over all of them). shifted:
        the token grids of two crops of the reference offset by part of a token (see :func:`shift_null`)."""
        moments = TokenMoments.of(grids)
        within = split_null(grids)
        if shifted is not None:
            shift = shift_null(*shifted)
            within = shift if shift > ALIASING_RATIO * within else within
        return cls(moments if keep_moments else None, moments.mean, within, views_null(grids))


class DistributionModel:
    """The references' token Gaussian of one tap and the null level of ``D``, learned a reference at a time.

    Keeps the running moments (so :meth:`add` after a fit refits with no old tokens), the null values
    (leave-one-out for the first ``max_folds`` references, a split null for every reference) and the
    level: their mean. ``decision(D) = D / (level * margin)``; 1 is the decision boundary.
    """

    def __init__(self, max_folds: int, margin: float):
        self.max_folds, self.margin = max_folds, margin
        self.total: TokenMoments | None = None
        self.references = 0
        self.nulls: list[float] = []
        self.pending: list[ReferenceStats] = []
        self.gaussian: TokenGaussian | None = None
        self.level = 0.0
        # This fit's null values apart (not saved): leave-one-out (between parts) and split (within one part).
        self.between: list[float] = []
        self.within: list[float] = []
        self.across: list[float] = []  # views of one image against each other (tiled parts)

    def add(self, grids: torch.Tensor, shifted: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """One reference's identity token grids ``[V, h, w, C]`` (and optionally two slightly shifted
        crops' grids, for its within-image null: the larger of the split and the shift null)."""
        if grids.ndim != 4:
            raise ValueError(f"expected reference grids [V, h, w, C], got {tuple(grids.shape)}")
        folds_left = self.max_folds - self.references - len(self.pending)
        stats = ReferenceStats.of(grids, keep_moments=folds_left > 0, shifted=shifted)
        moments = stats.moments or TokenMoments.of(grids)
        self.total = moments if self.total is None else self.total + moments
        self.pending.append(stats)

    def finish(self) -> None:
        """Fit the Gaussian on every reference so far and add the new references' null values."""
        if self.total is None:
            raise ValueError("the distribution model needs at least one reference")
        k = self.references + len(self.pending)
        for stats in self.pending:
            if stats.moments is not None and k >= 2:
                held_out = TokenGaussian.fit(self.total - stats.moments)
                value = loo_scale(k) * float(held_out.mean_shifts_of_means(stats.mean[None])[0])
                if value > DUPLICATE * stats.split:  # an identical twin among the others measures nothing
                    self.nulls.append(value)
                    self.between.append(value)
            self.nulls.append(stats.split)
            self.within.append(stats.split)
            if stats.across is not None:
                self.across.append(stats.across)
        self.references, self.pending = k, []
        self.gaussian = TokenGaussian.fit(self.total)
        self.level = max(sum(self.nulls) / len(self.nulls), 1e-12)

    def parts_differ(self) -> bool | None:
        """Whether whole references differ more from each other than one reference's halves do (mean
        leave-one-out null above the mean split null): the product's mean token varies between normal
        parts (lighting, placement), so a shifted mean token is no sign of a defect. With one reference
        of several views (a tiled long part), its views against each other stand in for parts. None:
        not measured in this fit (one reference of one view, or a loaded model)."""
        between = self.between or self.across
        if not between or not self.within:
            return None
        return sum(between) / len(between) > sum(self.within) / len(self.within)

    def decisions(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, N, C]`` of B images -> ``[B]`` decisions (1.0 = the decision level)."""
        if self.gaussian is None:
            raise ValueError("the distribution model is not fitted")
        return decision_of(self.gaussian.mean_shifts(tokens), self.level, self.margin)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        assert self.total is not None and self.gaussian is not None
        return {"sum": self.total.total, "outer": self.total.outer, "precision": self.gaussian.precision}

    def meta(self) -> dict:
        return {"tokens": self.total.count if self.total else 0, "references": self.references,
                "nulls": list(self.nulls), "level": self.level}

    def load(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        """Restore :meth:`state_dict` + :meth:`meta`; a bad value raises ValueError naming the field."""
        for key, low in (("tokens", 2), ("references", 1)):
            if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < low:
                raise ValueError(f"distribution field {key!r} must be an integer >= {low}, got {meta[key]!r}")
        level = meta["level"]
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < math.inf:
            raise ValueError(f"distribution field 'level' must be a positive finite number, got {level!r}")
        self.total = TokenMoments(int(meta["tokens"]), state["sum"].double(), state["outer"].double())
        self.references = int(meta["references"])
        if not isinstance(meta["nulls"], list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in meta["nulls"]):
            raise ValueError("distribution field 'nulls' must list finite numbers")
        self.nulls = [float(v) for v in meta["nulls"]]
        self.level = float(meta["level"])
        self.gaussian = TokenGaussian(self.total.mean, state["precision"].double())
