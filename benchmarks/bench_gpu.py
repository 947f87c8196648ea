"""Images/s on a GPU: the default backbone and a CLIP ViT-L/14-sized random model at 518, float32 vs
bfloat16 autocast, a few batch sizes; what bounds it (backbone forward share, decoding).

    python benchmarks/bench_gpu.py --images DIR [--refs DIR] [--n 64]

DIR holds test PNGs (e.g. bottle test/good), --refs the references (k = 4 are used). The CLIP model
is randomly initialised with ViT-L/14@336's architecture, saved with ``save_pretrained`` and loaded
back through the real path (no weights can be downloaded here): its speed is the real model's,
its scores mean nothing. Also checks that CUDA and CPU agree on the default detector's scores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_speed import TimedBackbone  # noqa: E402

from vandal.data.images import load_image  # noqa: E402
from vandal.detector import Detector  # noqa: E402


def vit_l14_clip(directory: Path) -> str:
    """A random CLIP with ViT-L/14@336's vision tower and a 12-layer text tower, saved like a Hub model."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from clip_fixtures import _byte_level_vocab

    vocab = _byte_level_vocab()
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(directory)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                           num_hidden_layers=24, num_attention_heads=16, hidden_act="quick_gelu"),
        projection_dim=768)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    return str(directory)


def rate(detector: Detector, inputs: list, repeat: int = 1) -> tuple[float, float]:
    """(images/s, backbone forward share) predicting ``inputs``."""
    detector.predict(inputs[: detector.batch_size])  # warm-up (kernels, autotuning)
    timed = TimedBackbone(detector.embedder_.backbone)
    detector.embedder_.backbone = timed
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        detector.predict(inputs)
    total = time.perf_counter() - start
    detector.embedder_.backbone = timed.inner
    return repeat * len(inputs) / total, timed.seconds / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--refs", type=Path, default=None)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--skip-clip", action="store_true")
    args = parser.parse_args()
    files = sorted(args.images.glob("*.png"))
    paths = (files * (args.n // len(files) + 1))[: args.n]
    refs = sorted((args.refs or args.images).glob("*.png"))[:4]
    arrays = [load_image(p) for p in paths]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; {len(paths)} test images ({arrays[0].shape[1]}x{arrays[0].shape[0]})")

    cpu = Detector(progress=False, device="cpu").fit(refs)
    gpu = Detector(progress=False, device=device).fit(refs)
    a = np.array([p.pred_score for p in cpu.predict(arrays[:8])])
    b = np.array([p.pred_score for p in gpu.predict(arrays[:8])])
    print(f"default detector, CPU vs {device} pred_score: max |diff| {np.abs(a - b).max():.2e} "
          f"(scores {a.min():.3f}..{a.max():.3f}); labels equal: {bool(((a > 0.5) == (b > 0.5)).all())}")
    for precision in ("float32", "bfloat16"):
        for batch in (8, 32):
            detector = Detector(progress=False, device=device, batch_size=batch, precision=precision).fit(refs)
            files_rate, _ = rate(detector, paths)
            arrays_rate, share = rate(detector, arrays, repeat=2)
            print(f"efficientnet-lite2 320 px, k=4, {precision}, batch {batch}: {files_rate:.1f} img/s from PNG files, "
                  f"{arrays_rate:.1f} img/s from decoded arrays (backbone forward {100 * share:.0f}% of it)")
    if args.skip_clip:
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        clip = vit_l14_clip(Path(tmp) / "vit-l14")
        print(f"random ViT-L/14 CLIP saved in {time.perf_counter() - start:.1f} s")
        for precision in ("float32", "bfloat16"):
            for batch in (8, 32):
                detector = Detector(backbone=clip, image_size=518, taps=(6, 12, 18, 24), class_name="bottle",
                                    progress=False, device=device, batch_size=batch, precision=precision).fit(refs)
                arrays_rate, share = rate(detector, arrays[:32], repeat=2)
                print(f"CLIP ViT-L/14 518 px + text + memory, k=4, {precision}, batch {batch}: {arrays_rate:.1f} img/s "
                      f"from decoded arrays (backbone forward {100 * share:.0f}%)")


if __name__ == "__main__":
    main()
