"""CLIP ViT through Hugging Face ``transformers``: the papers' backbone (docs/method.md §1).

Weights come from a Hugging Face id (downloaded once into the HF cache) or a local directory
written by ``save_pretrained``; a local directory never touches the network.

Two details follow APRIL-GAN's reference code rather than ``transformers``' defaults:

- Position embeddings are resized **once at load** with ``F.interpolate(mode="bicubic",
  align_corners=False, antialias=True)``, as open_clip's ``resize_pos_embed`` does. ``transformers``'
  own ``interpolate_pos_encoding=True`` re-interpolates at every forward *without* antialias, and
  PyTorch's antialiased bicubic uses a different cubic kernel (a = -0.5, as PIL) from the plain one
  (a = -0.75), even when upsampling: the tables differ. ``pos_antialias=False`` gives the
  ``transformers`` table instead.
- Optionally ``hidden_act="gelu"``: the reference code rebuilt the 518-px OpenAI model from an
  open_clip config without ``quick_gelu``, so it ran OpenAI's QuickGELU weights with exact GELU.
  The default keeps the checkpoint's own activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import BackboneOutput, BackboneSpec, Preprocessing, check_pixels
from .hf import PatchBackbone, load_config, local_model_dir, read_preprocessing, require_transformers

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# ViT-L/14@336 runs at 518 (a 37x37 grid) in both papers.
PAPER_IMAGE_SIZE = 518
TEXT_BATCH = 64
OPENAI_PREPROCESSING = Preprocessing(mean=OPENAI_MEAN, std=OPENAI_STD, resample="bicubic")


def default_image_size(native: int, patch_size: int) -> int:
    """518 for a 336-px patch-14 model (the papers' setting), otherwise the model's native size."""
    return PAPER_IMAGE_SIZE if (native, patch_size) == (336, 14) else native


def default_taps(depth: int) -> tuple[int, ...]:
    """Blocks at the quarters of the depth, 1-based: (6, 12, 18, 24) for 24 blocks."""
    return tuple(sorted({max(1, round(depth * q / 4)) for q in (1, 2, 3, 4)}))


def _load_config(name: str, local: bool, offline: bool = False):
    return load_config(name, local, offline, "CLIP", ("clip",))


def resize_position_table(table: torch.Tensor, grid: int, antialias: bool = True) -> torch.Tensor:
    """Position table ``[1 + g*g, C]`` (CLS first) -> ``[1 + grid*grid, C]``, bicubic on the grid."""
    old = math.isqrt(table.shape[0] - 1)
    if old * old != table.shape[0] - 1:
        raise ValueError(f"position table of {table.shape[0]} rows is not CLS + a square grid")
    if old == grid:
        return table
    cls, patches = table[:1], table[1:]
    patches = patches.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False,
                            antialias=antialias)
    patches = patches.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(table.dtype)
    return torch.cat([cls, patches], dim=0)


class CLIPBackbone(PatchBackbone):
    """A frozen CLIP ViT: taps are residual-stream outputs of 1-based blocks, CLS dropped.

    name: Hugging Face id or local directory. image_size: input side; ``None`` gives
    :func:`default_image_size`. taps: 1-based block indices; ``None`` gives the quarters of the
    depth. pos_antialias: how the position table is resized (see the module docstring).
    hidden_act: override the towers' activation (``"gelu"`` reproduces the reference code).
    dtype: weights' dtype (float32 unless given). offline: never download (a Hugging Face id must
    already be in the local cache), as when a saved detector is loaded.
    """

    has_text = True

    def __init__(self, name: str, image_size: int | None = None, taps: tuple[int, ...] | None = None,
                 pos_antialias: bool = True, hidden_act: str | None = None,
                 dtype: torch.dtype | str | None = None, offline: bool = False):
        super().__init__()
        require_transformers(f"CLIP backbone {name!r}")
        from transformers import AutoTokenizer, CLIPModel

        local_dir = local_model_dir(name, "CLIP")
        local = local_dir is not None
        config = _load_config(name, local, offline)
        local = local or offline  # from here on: files only
        if hidden_act is not None:
            config.vision_config.hidden_act = hidden_act
            config.text_config.hidden_act = hidden_act
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.model = CLIPModel.from_pretrained(name, config=config, local_files_only=local,
                                               dtype=dtype or torch.float32)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local)
        except (OSError, ValueError) as err:
            raise ValueError(f"{name!r} has no usable CLIP tokenizer: {err}") from err

        vision_config = config.vision_config
        depth, patch, native = (vision_config.num_hidden_layers, vision_config.patch_size,
                                vision_config.image_size)
        image_size = image_size or default_image_size(native, patch)
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        taps = tuple(taps) if taps else default_taps(depth)
        bad = [t for t in taps if not 1 <= t <= depth]
        if bad:
            raise ValueError(f"CLIP taps are 1-based block indices in [1, {depth}], got {bad}")
        if len(set(taps)) != len(taps):
            raise ValueError(f"duplicate CLIP taps: {taps}")

        self._resize_positions(image_size // patch, pos_antialias)
        self._context = min(config.text_config.max_position_embeddings,
                            getattr(self.tokenizer, "model_max_length", 77) or 77)
        self.eval().requires_grad_(False)
        self.spec = BackboneSpec(
            name=name,
            kind="clip",
            image_size=image_size,
            taps=taps,
            tap_dims=(vision_config.hidden_size,) * len(taps),
            embed_dim=config.projection_dim,
            preprocessing=read_preprocessing(name, local_dir, OPENAI_PREPROCESSING, offline),
            extra={"patch_size": patch, "native_image_size": native, "depth": depth,
                   "pos_antialias": pos_antialias, "hidden_act": vision_config.hidden_act},
        )

    def _resize_positions(self, grid: int, antialias: bool) -> None:
        """Replace the position table once, so every forward runs at the native-size code path."""
        embeddings = self.model.vision_model.embeddings
        old = embeddings.position_embedding.weight.detach()
        new = resize_position_table(old, grid, antialias=antialias)
        if new is old:
            return
        embeddings.position_embedding = nn.Embedding.from_pretrained(new.clone(), freeze=True)
        embeddings.num_patches = grid * grid
        embeddings.num_positions = grid * grid + 1
        embeddings.image_size = grid * embeddings.patch_size
        embeddings.position_ids = torch.arange(grid * grid + 1, device=old.device).expand(1, -1)
        self.model.config.vision_config.image_size = embeddings.image_size  # type: ignore[union-attr]

    @property
    def position_table(self) -> torch.Tensor:
        """The position embeddings in use, ``[1 + grid*grid, C]`` (CLS row first)."""
        return self.model.vision_model.embeddings.position_embedding.weight

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:
        """pixels ``[B, 3, S, S]`` -> taps ``[B, S/p, S/p, C]`` and the global ``[B, D]``."""
        check_pixels(pixels, self.image_size)
        vision = self.model.vision_model
        x = vision.pre_layrnorm(vision.embeddings(pixels))
        wanted = set(self.spec.taps)
        found: dict[int, torch.Tensor] = {}
        # Run the blocks one by one: the taps are the residual stream between them.
        for depth, layer in enumerate(vision.encoder.layers, start=1):
            x = layer(x, None)
            if depth in wanted:
                found[depth] = x
        batch, grid = pixels.shape[0], self.grid_size
        taps = [found[t][:, 1:].reshape(batch, grid, grid, -1) for t in self.spec.taps]
        cls = self.model.visual_projection(vision.post_layernorm(x[:, 0]))
        return BackboneOutput(taps=taps, global_embedding=F.normalize(cls, dim=-1))

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> ``[N, D]`` L2-normalised, encoded ``TEXT_BATCH`` at a time."""
        if not prompts:
            raise ValueError("encode_text needs at least one prompt")
        out = []
        for start in range(0, len(prompts), TEXT_BATCH):
            tokens = self.tokenizer(list(prompts[start:start + TEXT_BATCH]), padding=True,
                                    truncation=True, max_length=self._context, return_tensors="pt")
            text = self.model.text_model(input_ids=tokens["input_ids"].to(self.device),
                                         attention_mask=tokens["attention_mask"].to(self.device))
            out.append(self.model.text_projection(text.pooler_output))
        return F.normalize(torch.cat(out), dim=-1)

    def project_taps(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Training-free: tap tokens ``[B, h, w, C]`` through the final LN + projection -> ``[B, h, w, D]``.

        Not normalised: scoring normalises.
        """
        vision = self.model.vision_model
        return [self.model.visual_projection(vision.post_layernorm(tap)) for tap in taps]
