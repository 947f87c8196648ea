"""Exact multi-scale text windows (WinCLIP-style) vs the pooled variant, on CPU at 224.

A random CLIP with a ViT-B/16 vision tower (the speed of real weights, none needed): prints
windows and encoder passes per image and seconds per image for window sizes (2, 3), against the
full-image text map and the pooled multi-scale map.

    python benchmarks/bench_windows.py [--images 2] [--sizes 2 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adapters import make_vit_b16_clip  # noqa: E402

from vandal.backbones import create_backbone  # noqa: E402
from vandal.prompts import text_features  # noqa: E402
from vandal.scoring.text import pooled_text_maps, text_anomaly_maps  # noqa: E402
from vandal.scoring.windows import WINDOW_CHUNK, window_index, window_text_map  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backbone = create_backbone(make_vit_b16_clip(Path(tmp)), image_size=224)
    with torch.inference_mode():
        text = text_features(backbone, "bottle").float()
        pixels = torch.randn(args.images, 3, 224, 224)
        grid = backbone.grid_size
        windows = sum(window_index(grid, r).shape[0] for r in args.sizes)
        passes = sum(-(-window_index(grid, r).shape[0] * args.images // WINDOW_CHUNK) for r in args.sizes)
        print(f"ViT-B/16-sized random CLIP at 224 ({grid}x{grid} tokens), torch {torch.get_num_threads()} threads")
        print(f"windows per image: {windows} (sizes {args.sizes}); encoder passes for {args.images} image(s): "
              f"{passes} batched window passes + 1 full-image pass (one pass per window would be {windows * args.images})")
        start = time.perf_counter()
        out = backbone(pixels)
        full = time.perf_counter() - start
        projected = backbone.project_taps(out.taps)
        start = time.perf_counter()
        text_anomaly_maps(projected, text, 224)
        plain = time.perf_counter() - start
        start = time.perf_counter()
        pooled_text_maps(projected, text, 224, scales=(1, 3, 5))
        pooled = time.perf_counter() - start
        start = time.perf_counter()
        window_text_map(backbone, pixels, text, sizes=args.sizes)
        exact = time.perf_counter() - start
    n = args.images
    print(f"full-image forward: {full / n:.3f} s/image; text map {plain / n:.3f} s/image")
    print(f"pooled multi-scale (r = 1, 3, 5): +{pooled / n:.3f} s/image")
    print(f"exact windows {args.sizes}: +{exact / n:.3f} s/image ({exact / max(full, 1e-9):.1f}x the full forward)")


if __name__ == "__main__":
    main()
