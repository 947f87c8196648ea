"""A tiny randomly initialised CLIP saved the way Hugging Face checkpoints are, for offline tests.

Tests load it back through :func:`vandal.backbones.create_backbone` (the real loading path), so
the directory holds what a downloaded model holds: ``config.json``, weights, a tokenizer and a
``preprocessor_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Deliberately not the OpenAI values, so a test can tell that they were read from the directory.
TINY_MEAN = (0.5, 0.25, 0.125)
TINY_STD = (0.2, 0.3, 0.4)
TINY_IMAGE_SIZE = 32  # native size: a 4x4 grid of 8x8 patches
TINY_PATCH = 8
TINY_DEPTH = 4
TINY_WIDTH = 32
TINY_EMBED = 16


def _byte_level_vocab() -> dict[str, int]:
    """Every byte-level symbol alone and as a word end: any ASCII text tokenises with no merges.

    The special tokens come last, so end-of-text has the highest id as in OpenAI's vocabulary
    (CLIP's text pooling may take the argmax of the ids).
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def make_tiny_clip(dirpath: str | Path, seed: int = 0) -> str:
    """Build a tiny random CLIP with its tokenizer and preprocessor config in ``dirpath``.

    Vision: 32x32 native input, 8x8 patches, width 32, 4 blocks; joint space 16-d.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    dirpath = Path(dirpath)
    dirpath.mkdir(parents=True, exist_ok=True)
    vocab = _byte_level_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    tokenizer.save_pretrained(dirpath)

    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=TINY_WIDTH, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH, hidden_size=TINY_WIDTH,
            intermediate_size=64, num_hidden_layers=TINY_DEPTH, num_attention_heads=2,
        ),
        projection_dim=TINY_EMBED,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(dirpath)

    # What CLIPImageProcessor writes; resample 3 is PIL's BICUBIC.
    (dirpath / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "image_mean": list(TINY_MEAN),
        "image_std": list(TINY_STD), "resample": 3, "crop_size": TINY_IMAGE_SIZE,
    }))
    return str(dirpath)
