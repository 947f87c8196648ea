"""Exact multi-scale text windows (WinCLIP's idea, docs/method.md §4), for CLIP backbones.

For a window of r x r patches (stride 1 over the token grid) the vision transformer runs on the
CLS token plus only the window's tokens, each with its own position embedding, so the window gets
an embedding of its own (CLS -> post-layernorm -> projection). Its score is the text probability
of "abnormal". A patch's score at scale r is the harmonic mean of the scores of every window that
covers it; scales are combined by harmonic mean together with the full-image patch scores.
Windows are batched (one encoder pass per chunk of windows), never looped over one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .text import TEMPERATURE, harmonic_mean

WINDOW_CHUNK = 512  # windows x images per encoder pass: bounds activation memory


def window_index(grid: int, r: int) -> torch.Tensor:
    """Token indices (row-major in a ``grid x grid`` grid) of every r x r window, stride 1:
    ``[(grid - r + 1) ** 2, r * r]``, windows in row-major order of their top-left corner."""
    if not 1 <= r <= grid:
        raise ValueError(f"window size must be in [1, {grid}], got {r}")
    cells = torch.arange(grid * grid, dtype=torch.float32).reshape(1, 1, grid, grid)
    return F.unfold(cells, kernel_size=r).long()[0].T  # unfold: [r*r, windows]


def window_embeddings(backbone, pixels: torch.Tensor, r: int, chunk: int = WINDOW_CHUNK) -> torch.Tensor:
    """pixels ``[B, 3, S, S]`` -> window embeddings ``[B, W, D]``, L2-normalised (W windows of r x r)."""
    vision = backbone.model.vision_model
    tokens = vision.embeddings(pixels)  # [B, 1 + N, C]: CLS and patches, position embeddings added
    batch = tokens.shape[0]
    index = window_index(backbone.grid_size, r).to(tokens.device) + 1  # +1: skip the CLS row
    cls = tokens[:, :1]
    out = []
    per_pass = max(1, chunk // batch)
    for start in range(0, index.shape[0], per_pass):
        idx = index[start: start + per_pass]  # [w, r*r]
        patches = tokens[:, idx]  # [B, w, r*r, C]
        seq = torch.cat([cls[:, None].expand(-1, idx.shape[0], -1, -1), patches], dim=2)
        x = vision.pre_layrnorm(seq.flatten(0, 1))
        for layer in vision.encoder.layers:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x
        embedded = backbone.model.visual_projection(vision.post_layernorm(x[:, 0]))
        out.append(embedded.reshape(batch, idx.shape[0], -1))
    return F.normalize(torch.cat(out, dim=1).float(), dim=-1)


def window_scores(embeddings: torch.Tensor, text: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``[B, W, D]`` window embeddings, text ``[2, D]`` -> abnormal probability ``[B, W]``."""
    return (temperature * embeddings @ F.normalize(text.float(), dim=-1).T).softmax(dim=-1)[..., 1]


def harmonic_patch_scores(scores: torch.Tensor, grid: int, r: int) -> torch.Tensor:
    """Window scores ``[B, (grid-r+1)**2]`` -> per patch ``[B, grid, grid]``: the harmonic mean of the
    windows covering the patch (fold scatter-adds each window's reciprocal onto its r x r patches)."""
    batch, side = scores.shape[0], grid - r + 1
    reciprocal = scores.float().reciprocal().reshape(batch, 1, side * side).expand(-1, r * r, -1)
    total = F.fold(reciprocal, output_size=(grid, grid), kernel_size=r)[:, 0]
    count = F.fold(torch.ones_like(reciprocal[:1]), output_size=(grid, grid), kernel_size=r)[:, 0]
    return count / total


def window_text_map(backbone, pixels: torch.Tensor, text: torch.Tensor, sizes: Sequence[int] = (2, 3),
                    patch_scores: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-scale window scores ``[B, g, g]``: per scale the harmonic patch scores, combined by
    harmonic mean with ``patch_scores`` ``[B, g, g]`` (the full-image patch probabilities) if given."""
    grid = backbone.grid_size
    maps = [harmonic_patch_scores(window_scores(window_embeddings(backbone, pixels, r), text), grid, r)
            for r in sizes]
    if patch_scores is not None:
        maps.append(patch_scores.float())
    return harmonic_mean(torch.stack(maps), dim=0)
