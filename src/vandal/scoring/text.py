"""Zero-shot text scoring (docs/method.md §3 and §4): pure functions on tensors.

``text`` is always ``T`` of shape ``[2, D]`` (row 0 normal, row 1 abnormal), see
:func:`vandal.prompts.text_features`. Features are normalised here, so callers may pass raw
projected tokens. Everything is computed in float32 whatever the backbone's dtype.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..memory.pooling import pool_neighbourhood

TEMPERATURE = 100.0  # CLIP's logit scale, as the reference code hard-codes it


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def text_image_score(global_embedding: torch.Tensor, text: torch.Tensor,
                     temperature: float = TEMPERATURE) -> torch.Tensor:
    """global ``[B, D]``, text ``[2, D]`` -> ``[B]`` = ``softmax(100 * g @ T.T)[:, 1]``."""
    g = F.normalize(global_embedding.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    return (temperature * g @ t.T).softmax(dim=-1)[:, 1]


def text_logits(tokens: torch.Tensor, text: torch.Tensor,
                temperature: float = TEMPERATURE) -> torch.Tensor:
    """tokens ``[B, h, w, D]`` -> logits ``[B, 2, h, w]`` = ``100 * normalize(F) @ T.T``.

    text is ``[2, D]`` for the whole batch, or ``[B, 2, D]`` for one class per image (training).
    """
    f = F.normalize(tokens.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    if t.ndim == 3:
        return temperature * torch.einsum("bhwd,bkd->bkhw", f, t)
    return (temperature * f @ t.T).permute(0, 3, 1, 2)


def text_probabilities(logits: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """logits ``[B, 2, h, w]`` -> ``[B, 2, H, W]``: upsample the logits, then softmax.

    The order matters: the reference interpolates logits (bilinear, align_corners=True) and only
    then takes the softmax, which gives sharper maps than upsampling probabilities.
    """
    logits = F.interpolate(logits, size=_size2(size), mode="bilinear", align_corners=True)
    return logits.softmax(dim=1)


def abnormal_probability(logits: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """logits ``[B, 2, h, w]`` -> ``[B, H, W]``: the abnormal channel of :func:`text_probabilities`."""
    return text_probabilities(logits, size)[:, 1]


def text_anomaly_maps(projected_taps: Sequence[torch.Tensor], text: torch.Tensor,
                      size: int | tuple[int, int], temperature: float = TEMPERATURE) -> torch.Tensor:
    """APRIL-GAN's zero-shot map: per tap ``[B, h, w, D]`` -> abnormal probability, summed.

    Returns ``[B, H, W]`` in ``[0, n_taps]``.
    """
    if not projected_taps:
        raise ValueError("text_anomaly_maps needs at least one tap")
    return functools.reduce(operator.add, (abnormal_probability(text_logits(tap, text, temperature), size)
                                          for tap in projected_taps))


def harmonic_mean(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Harmonic mean along ``dim`` of non-negative values; a zero anywhere gives zero."""
    # 1/0 = inf and n/inf = 0: the limit, with no special case.
    return values.shape[dim] / values.reciprocal().sum(dim=dim)


# One neighbourhood-averaging implementation serves text maps and memory banks alike.
pool_tokens = pool_neighbourhood


def pooled_text_maps(projected_taps: Sequence[torch.Tensor], text: torch.Tensor,
                     size: int | tuple[int, int], scales: Sequence[int] = (1, 3, 5),
                     temperature: float = TEMPERATURE) -> torch.Tensor:
    """The cheap multi-scale variant (docs/method.md §4): ``[B, H, W]`` in ``[0, n_taps]``.

    For each tap, the projected tokens are pooled over ``r x r`` neighbourhoods for each ``r`` in
    ``scales``, each pooled grid is scored as in :func:`text_anomaly_maps`, the per-scale
    probabilities are combined by harmonic mean, and the taps are summed. ``scales=(1,)`` is
    exactly :func:`text_anomaly_maps`.
    """
    if not projected_taps:
        raise ValueError("pooled_text_maps needs at least one tap")
    if not scales:
        raise ValueError("pooled_text_maps needs at least one scale")
    total = None
    for tap in projected_taps:
        per_scale = torch.stack([
            abnormal_probability(text_logits(pool_tokens(tap, r), text, temperature), size)
            for r in scales
        ])
        combined = harmonic_mean(per_scale, dim=0)
        total = combined if total is None else total + combined
    assert total is not None, "pooled_text_maps needs at least one tap"
    return total
