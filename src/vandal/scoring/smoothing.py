"""Gaussian smoothing of anomaly maps: separable, reflect padding, as ``scipy.ndimage.gaussian_filter``.

Used by fusion (the fused view map), object maps, adapter maps and the ONNX graph.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


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

