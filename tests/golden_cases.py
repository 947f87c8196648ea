"""The golden matrix: detector configurations whose outputs were recorded before the composition
refactor (issue 8) and must stay identical (``tests/test_golden.py``).

Each case is flat detector settings (the field names ``Detector(**settings)`` accepts), a reference
set (empty: reference-free) and test images. Maps are compared on a regular subsample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).parent / "golden"
MAP_POINTS = 24  # maps are compared on a MAP_POINTS x MAP_POINTS grid of pixels
BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


def _textures():
    from synthetic import plant_defect, texture

    references = [texture(seed) for seed in (0, 1)]
    tests = [plant_defect(texture(10 + i), i)[0] for i in range(2)] + [texture(60)]
    wide = np.concatenate([texture(3), texture(4)], axis=1)[:120]
    return references, tests + [wide]


def _scenes():
    from scenes import capsule_scene

    references = [capsule_scene(seed, size=160)[0] for seed in (1, 2)]
    tests = [capsule_scene(40, size=160, defect="stain")[0], capsule_scene(41, size=160)[0]]
    return references, tests


def _adapters_file(clip_dir: str, out: Path) -> str:
    import torch

    from vandal.backbones import create_backbone
    from vandal.scoring.adapters import TapAdapters, adapters_metadata, backbone_record, save_adapters

    spec = create_backbone(clip_dir, device="cpu").spec
    torch.manual_seed(5)
    adapters = TapAdapters(spec.tap_dims, spec.embed_dim)
    path = out / "adapters.safetensors"
    save_adapters(path, adapters.state_dict(), adapters_metadata(backbone_record(spec), ["bottle"], "golden"))
    return str(path)


def cases(workdir: Path) -> list[tuple[str, dict, list, list]]:
    """(name, settings, references, tests); ``workdir`` holds the tiny CLIP and its adapters."""
    from clip_fixtures import make_tiny_clip

    textures, texture_tests = _textures()
    scenes, scene_tests = _scenes()
    clip = make_tiny_clip(workdir / "clip")
    adapters = _adapters_file(clip, workdir)
    out = [
        ("default-k2", {}, textures, texture_tests),
        ("default-k1", {}, textures[:1], texture_tests),
        ("augment-n135-k2", {"augment": True, "neighbourhood": (1, 3, 5)}, textures, texture_tests),
        ("tile-k2", {"resize": "tile"}, textures, texture_tests[-1:]),
        ("pad-k1-sigma0", {"resize": "pad", "smoothing_sigma": 0.0}, textures[:1], texture_tests[-1:]),
        ("individual-sum-k2", {"individual": "on"}, scenes, scene_tests),
        ("individual-mean-k2-unaligned", {"individual": "on", "fusion": "mean", "align_objects": False},
         scenes, scene_tests),
        ("individual-auto-k1", {"individual": "auto", "neighbourhood": (1, 3)}, scenes[:1], scene_tests),
        ("mutual-objects", {"mutual": "objects"}, [], scene_tests),
        ("mutual-batch", {"mutual": "batch"}, [], texture_tests[:3]),
        ("clip-zero-shot-adapters-windows", {"backbone": clip, "class_name": "bottle", "adapters": adapters,
                                             "text_scales": "windows", "window_sizes": (2, 3)}, [], texture_tests[:2]),
        ("clip-few-shot-pooled", {"backbone": clip, "class_name": "bottle", "text_scales": "pooled",
                                  "image_size": 48, "neighbourhood": (1,)}, textures, texture_tests[:2]),
        ("clip-memory-only-k1", {"backbone": clip, "taps": (2, 4), "smoothing_sigma": 1.5}, textures[:1],
         texture_tests[:2]),
    ]
    if BOTTLE.is_dir():
        from vandal.data.images import load_image

        good = sorted((BOTTLE / "train" / "good").glob("*.png"))[:2]
        broken = sorted((BOTTLE / "test" / "broken_large").glob("*.png"))[:1]
        normal = sorted((BOTTLE / "test" / "good").glob("*.png"))[:1]
        refs = [load_image(p) for p in good]
        tests = [load_image(p) for p in broken + normal]
        out += [("bottle-default-k2", {}, refs, tests), ("bottle-default-k1", {}, refs[:1], tests)]
    return out


def map_sample(anomaly_map: np.ndarray) -> np.ndarray:
    """A MAP_POINTS x MAP_POINTS float32 subsample of a map (regular grid, corners included)."""
    h, w = anomaly_map.shape
    ys = np.linspace(0, h - 1, MAP_POINTS).round().astype(int)
    xs = np.linspace(0, w - 1, MAP_POINTS).round().astype(int)
    return np.asarray(anomaly_map, dtype=np.float32)[np.ix_(ys, xs)]
