"""DINOv2 ViTs (with or without registers) through Hugging Face ``transformers``: text-free features.

Weights come from a Hugging Face id (``facebook/dinov2-small``, ``facebook/dinov2-with-registers-base``...)
or a local directory written by ``save_pretrained``. Taps are the residual stream after 1-based
blocks, passed through the model's final LayerNorm as DINOv2's ``get_intermediate_layers(norm=True)``
gives them (the features AnomalyDINO and MuSc compare); the CLS token and the register tokens are
dropped, leaving the ``S/14 x S/14`` patch grid. Position embeddings are interpolated to the input
grid by ``transformers`` at every forward.
"""

from __future__ import annotations

import torch

from .base import BackboneOutput, BackboneSpec, Preprocessing, check_pixels
from .clip import default_taps
from .hf import PatchBackbone, load_config, local_model_dir, read_preprocessing, require_transformers

# What facebook/dinov2-* ship in preprocessor_config.json (BitImageProcessor): ImageNet statistics, bicubic.
IMAGENET_PREPROCESSING = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resample="bicubic")
MODEL_TYPES = ("dinov2", "dinov2_with_registers")
DEFAULT_IMAGE_SIZE = 448  # AnomalyDINO's default smaller edge (a 32 x 32 grid)


def resolve_taps(taps: tuple[int, ...] | None, depth: int) -> tuple[int, ...]:
    """1-based block indices; negative ones count from the end (-1: the last block); default: the
    quarters of the depth."""
    if not taps:
        return default_taps(depth)
    resolved = tuple(t + depth + 1 if t < 0 else t for t in taps)
    bad = [t for t, r in zip(taps, resolved) if not 1 <= r <= depth]
    if bad:
        raise ValueError(f"DINOv2 taps are 1-based block indices in [1, {depth}] (or -1 for the last), got {bad}")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"duplicate DINOv2 taps: {taps} -> {resolved}")
    return resolved


def _load_config(name: str, local: bool, offline: bool = False):
    return load_config(name, local, offline, "DINOv2", MODEL_TYPES)


class DINOv2Backbone(PatchBackbone):
    """A frozen DINOv2 ViT: taps ``[B, S/p, S/p, C]`` from 1-based blocks (final LayerNorm applied).

    name: Hugging Face id or local directory. image_size: input side, a multiple of the patch size
    (default 448). taps: 1-based blocks, negatives from the end; default: the quarters of the depth.
    tap_norm: pass taps through the final LayerNorm (DINOv2's convention for features). dtype:
    weights' dtype (float32 unless given). offline: never download, as when a saved detector is loaded.
    """

    def __init__(self, name: str, image_size: int | None = None, taps: tuple[int, ...] | None = None,
                 tap_norm: bool = True, dtype: torch.dtype | str | None = None, offline: bool = False):
        super().__init__()
        require_transformers()
        from transformers import AutoModel

        local_dir = local_model_dir(name, "DINOv2")
        local = local_dir is not None
        config = _load_config(name, local, offline)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.model = AutoModel.from_pretrained(name, config=config, local_files_only=local or offline,
                                               dtype=dtype or torch.float32)
        depth, patch = config.num_hidden_layers, config.patch_size
        image_size = image_size or DEFAULT_IMAGE_SIZE
        if image_size % patch:
            raise ValueError(f"DINOv2 image size must be a multiple of the patch size {patch}, got {image_size} "
                             f"(e.g. {max(patch, image_size // patch * patch)})")
        taps = resolve_taps(tuple(taps) if taps else None, depth)
        registers = int(getattr(config, "num_register_tokens", 0) or 0)
        self._skip = 1 + registers  # CLS, then the registers, then the patches
        self._tap_norm = tap_norm
        self.eval().requires_grad_(False)
        self.spec = BackboneSpec(
            name=name,
            kind="dinov2",
            image_size=image_size,
            taps=taps,
            tap_dims=(config.hidden_size,) * len(taps),
            embed_dim=None,
            preprocessing=read_preprocessing(name, local_dir, IMAGENET_PREPROCESSING, offline),
            extra={"patch_size": patch, "depth": depth, "model_type": config.model_type,
                   "register_tokens": registers, "tap_norm": tap_norm},
        )

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:
        """pixels ``[B, 3, S, S]`` -> taps ``[B, S/p, S/p, C]`` (no global embedding: no text space)."""
        check_pixels(pixels, self.image_size)
        x = self.model.embeddings(pixels.to(self.model.embeddings.patch_embeddings.projection.weight.dtype))
        wanted = set(self.spec.taps)
        last = max(wanted)
        found: dict[int, torch.Tensor] = {}
        # Run the blocks one by one, stopping at the deepest tap: the taps are the residual stream between them.
        for depth, layer in enumerate(self.model.encoder.layer, start=1):
            x = layer(x, None)
            if isinstance(x, tuple):  # older transformers return (hidden_states, ...)
                x = x[0]
            if depth in wanted:
                found[depth] = self.model.layernorm(x) if self._tap_norm else x
            if depth == last:
                break
        batch, grid = pixels.shape[0], self.grid_size
        return BackboneOutput(taps=[found[t][:, self._skip:].reshape(batch, grid, grid, -1) for t in self.spec.taps])
