"""The golden matrix: detector configurations whose scores, levels and maps must not drift
(``tests/test_golden.py``, one test per case), and the one command that records them.

Each case is flat detector settings (the field names ``Detector(**settings)`` accepts), a reference
set (empty: reference-free) and test images. Maps are compared on a regular subsample.

Re-record after an intended change of outputs (it rewrites ``tests/golden/``; review the diff)::

    PYTHONPATH=src python tests/golden_cases.py --record

``--spread`` instead prints, per case and quantity, how far this machine and thread count are from
the recorded values (run it under several ``OMP_NUM_THREADS`` to size ``TOLERANCE``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
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


def adapters_file(clip_dir: str, out: Path) -> str:
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
    adapters = adapters_file(clip, workdir)
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


def outputs(settings: dict, references: list, tests: list) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit and predict one case -> (its scalar outputs, its subsampled maps keyed by test index)."""
    from vandal.detector import Detector

    detector = Detector(**settings, device="cpu", progress=False).fit(references or None)
    predictions = detector.predict(tests)
    scalars = {
        "pred_score": [p.pred_score for p in predictions],
        "raw_score": [p.raw_score for p in predictions],
        "pred_label": [p.pred_label for p in predictions],
        "image_threshold": detector.calibration_.image_threshold,
        "pixel_threshold": detector.calibration_.pixel_threshold,
        "mask_pixels": [int(p.pred_mask.sum()) for p in predictions],
    }
    return scalars, {str(i): map_sample(p.anomaly_map) for i, p in enumerate(predictions)}


def recorded() -> tuple[dict, dict[str, np.ndarray]]:
    """The recorded scalars by case, and the recorded maps keyed ``"<case>/<test index>"``."""
    with np.load(GOLDEN_DIR / "maps.npz") as maps:
        return json.loads((GOLDEN_DIR / "golden.json").read_text()), dict(maps)


def record(workdir: Path) -> None:
    """Recompute every case and overwrite ``tests/golden/``."""
    scalars, maps = {}, {}
    for name, settings, references, tests in cases(workdir):
        scalars[name], case_maps = outputs(settings, references, tests)
        maps.update({f"{name}/{i}": m for i, m in case_maps.items()})
        print(name, [round(s, 6) for s in scalars[name]["pred_score"]], flush=True)
    GOLDEN_DIR.mkdir(exist_ok=True)
    (GOLDEN_DIR / "golden.json").write_text(json.dumps(scalars, indent=1))
    np.savez_compressed(GOLDEN_DIR / "maps.npz", **maps)


def spread(workdir: Path, only: list[str] | None = None) -> None:
    """Print each case's (or each of ``only``'s) largest absolute and relative differences from the
    recorded values."""
    golden, golden_maps = recorded()
    for name, settings, references, tests in cases(workdir):
        if only and name not in only:
            continue
        scalars, maps = outputs(settings, references, tests)
        pairs = {key: (scalars[key], golden[name][key])
                 for key in ("pred_score", "raw_score", "image_threshold", "pixel_threshold")}
        pairs["maps"] = (np.stack(list(maps.values())), np.stack([golden_maps[f"{name}/{i}"] for i in maps]))
        cells = []
        for key, (actual, expected) in pairs.items():
            actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
            diff = np.abs(actual - expected)
            cells.append(f"{key} {diff.max():.2e} / {(diff / np.maximum(np.abs(expected), 1e-12)).max():.2e}")
        print(f"{name}: " + "; ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Record the golden outputs, or measure this machine's spread "
                                                 "from them (max absolute / relative difference).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", action="store_true", help="recompute and overwrite tests/golden/")
    mode.add_argument("--spread", action="store_true", help="print differences from the recorded values")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--cases", nargs="+", default=None, help="--spread: only these cases")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.record:
            record(Path(tmp))
        else:
            spread(Path(tmp), args.cases)


if __name__ == "__main__":
    main()
