"""Adapter training throughput (images/s) on random CLIPs: the tiny test model and a ViT-B/16-sized one.

No weights are downloaded: both models are random and built here, because speed does not depend
on the weights. For each model it times a few real training steps (``train_step``: frozen
backbone forward, adapters, maps upsampled to the input, focal + dice, Adam). Decoding and
preprocessing (``load_item``) are timed separately, because a DataLoader with ``--workers``
runs them alongside the steps.

    python benchmarks/bench_adapters.py [--steps 3] [--batch-size 8] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic data + tiny CLIP

from vandal.backbones import create_backbone  # noqa: E402
from vandal.data.datasets import load_mvtec  # noqa: E402
from vandal.training.adapters import autocast_dtype, class_text, init_adapters, train_step  # noqa: E402
from vandal.training.data import epoch_plan, load_item, training_samples  # noqa: E402

from adapter_data import write_tree  # noqa: E402
from clip_fixtures import _byte_level_vocab, make_tiny_clip  # noqa: E402


def make_vit_b16_clip(dirpath: Path) -> str:
    """A random CLIP whose vision tower is ViT-B/16 (768 wide, 12 blocks, 12 heads, 224 px) -> 512-d."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = _byte_level_vocab()
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(dirpath)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                           num_hidden_layers=12, num_attention_heads=12),
        projection_dim=512,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(dirpath)
    return str(dirpath)


def bench(name: str, model_dir: str, size: int, tree: Path, steps: int, batch: int, device: str) -> None:
    backbone = create_backbone(model_dir, image_size=size, device=device)
    data = training_samples(load_mvtec(tree))
    plan = epoch_plan(data, seed=111, epoch=0, mosaic_prob=0.2)
    items = [plan[i % len(plan)] for i in range(batch)]
    start = time.perf_counter()
    loaded = [load_item(data.samples, item, size, backbone.preprocessing) for item in items]
    decode = batch / (time.perf_counter() - start)
    pixels = torch.stack([p for p, _ in loaded]).to(device)
    masks = torch.stack([m for _, m in loaded]).to(device)
    text = class_text(backbone, data.class_names)[torch.zeros(batch, dtype=torch.long)].to(device)
    adapters = init_adapters(backbone, 111).to(device).train()
    optimizer = torch.optim.Adam(adapters.parameters(), lr=1e-3, betas=(0.5, 0.999))
    amp = autocast_dtype(torch.device(device))
    train_step(backbone, adapters, optimizer, pixels, masks, text, amp)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(backbone, adapters, optimizer, pixels, masks, text, amp)
    seconds = time.perf_counter() - start
    spec = backbone.spec
    print(f"{name:<28} {size:>4}px taps {spec.taps} width {spec.tap_dims[0]} -> {spec.embed_dim}: "
          f"train {steps * batch / seconds:8.1f} img/s ({seconds / steps * 1000:7.1f} ms/step of {batch}), "
          f"decode+preprocess {decode:7.1f} img/s, loss {loss:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = make_tiny_clip(tmp / "tiny")
        vit_b = make_vit_b16_clip(tmp / "vit_b16")
        bench("tiny random CLIP", tiny, 64, write_tree(tmp / "tree64", size=64), args.steps, args.batch_size,
              args.device)
        # Images twice the input side, as real data is larger than the input.
        bench("ViT-B/16-sized random CLIP", vit_b, 224, write_tree(tmp / "tree448", size=448), args.steps,
              args.batch_size, args.device)


if __name__ == "__main__":
    main()
