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


def _symmetric_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that pad ``n`` samples by ``radius`` on each side, mirrored about the edges.

    Half-sample symmetric (``d c b a | a b c d | d c b a``), as scipy.ndimage's ``reflect``;
    repeated periodically, so any radius works even on tiny maps.
    """
    index = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(index >= n, 2 * n - 1 - index, index)


def gaussian_smooth(maps: torch.Tensor, sigma: float = 4.0, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of ``[B, H, W]`` maps -> ``[B, H, W]``, separable, reflect padding.

    Matches ``scipy.ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=4.0)`` per map.
    ``sigma <= 0`` returns the maps unchanged. Maps up to :data:`MATMUL_SIDE` are blurred by two
    products with banded matrices (:func:`blur_matrix`), larger ones by two 1-D convolutions.
    """
    if sigma <= 0:
        return maps
    out = maps.float()
    height, width = out.shape[-2:]
    # A traced graph (ONNX export) takes the convolutions: a matrix built from fake tensors must not
    # enter the cache. The products would spread one non-finite value over the whole map (0 x inf =
    # nan); the convolutions keep it where it is.
    if max(height, width) <= MATMUL_SIDE and not _tracing(out) and bool(torch.isfinite(out).all()):
        rows = blur_matrix(height, float(sigma), float(truncate), str(out.device))
        columns = rows if width == height else blur_matrix(width, float(sigma), float(truncate), str(out.device))
        return (rows @ out @ columns.T).contiguous()
    radius = int(truncate * sigma + 0.5)
    kernel = _gaussian_kernel(sigma, radius, maps.device).view(1, 1, -1)
    for axis in (-1, -2):  # blur the rows, then the columns (transposed into rows)
        rows = out if axis == -1 else out.transpose(-1, -2)
        batch, height, width = rows.shape
        padded = rows.index_select(-1, _symmetric_index(width, radius, maps.device))
        rows = F.conv1d(padded.reshape(batch * height, 1, -1), kernel).reshape(batch, height, width)
        out = rows if axis == -1 else rows.transpose(-1, -2)
    return out.contiguous()


# Sides up to this are blurred as ``A @ map @ A.T``, the reflect padding folded into the banded A: a
# single-channel conv1d runs far below the machine's matrix throughput (a 320 x 320 view map, sigma 4:
# see benchmarks/bench_speed.py --parts). Above it the O(n^3) products lose to the O(n^2 r) passes.
MATMUL_SIDE = 640


def _gaussian_kernel(sigma: float, radius: int, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _tracing(maps: torch.Tensor) -> bool:
    """Whether ``maps`` is being traced (an ONNX export's fake tensors, a compiled graph)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return type(maps) is not torch.Tensor or bool(compiling and compiling())


@functools.lru_cache(maxsize=16)
def blur_matrix(n: int, sigma: float, truncate: float, device: str) -> torch.Tensor:
    """``[n, n]``: row i holds the Gaussian weights of output sample i over the n input samples, with the
    half-sample symmetric padding of :func:`_symmetric_index` folded in (a weight lands on the sample it
    mirrors), so ``A @ x`` equals the padded 1-D convolution."""
    radius = int(truncate * sigma + 0.5)
    with torch.inference_mode(False), torch.no_grad():  # cached: usable in and out of inference mode
        kernel = _gaussian_kernel(sigma, radius, torch.device(device))
        sources = _symmetric_index(n, radius, torch.device(device)).unfold(0, 2 * radius + 1, 1)  # [n, 2r + 1]
        matrix = torch.zeros(n, n, device=device)
        matrix.scatter_add_(1, sources, kernel.expand(n, -1).contiguous())
    return matrix

