"""`vandal demo`: the main job on real images with the embedded default backbone, no network.

Fits on a few nominal textile images (``conformal-clip-data``, MIT) or on a folder with a
``nominal/`` subfolder and defect subfolders, predicts on a mix, prints image AUROC, writes overlays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.datasets import list_images
from .detector import Detector
from .metrics import auroc
from .outputs.run import write_outputs


def demo_root(data: Path | None) -> Path:
    if data is not None:
        return Path(data)
    try:
        from conformal_clip_data import textile_simulated_root
    except ImportError as error:
        raise ImportError(
            "the demo data is not installed: pip install 'vandal[demo]' (conformal-clip-data), or pass --data DIR"
        ) from error
    return textile_simulated_root()


def run_demo(data: Path | None, shots: int, per_class: int, out: Path, backbone: str, seed: int,
             device: str) -> float:
    root = demo_root(data)
    nominal_dir = root / "nominal"
    if not nominal_dir.is_dir():
        raise FileNotFoundError(f"{root} has no nominal/ subfolder: the demo needs nominal/ plus defect subfolders")
    defect_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "nominal")
    if not defect_dirs:
        raise FileNotFoundError(f"{root} has no defect subfolder beside nominal/")
    rng = np.random.default_rng(seed)
    nominal, _ = list_images(nominal_dir)
    if len(nominal) < shots + 1:
        raise ValueError(f"{nominal_dir} holds {len(nominal)} images; the demo needs more than --shots={shots}")
    order = rng.permutation(len(nominal))
    references = [nominal[i] for i in order[:shots]]
    test = [nominal[i] for i in order[shots: shots + per_class]]
    labels = [0] * len(test)
    for folder in defect_dirs:
        images, _ = list_images(folder)
        picked = [images[i] for i in rng.permutation(len(images))[:per_class]]
        test += picked
        labels += [1] * len(picked)
    print(f"demo: fitting on {len(references)} nominal image(s) from {nominal_dir}")
    detector = Detector(backbone=backbone, device=device).fit(references)
    scores = write_outputs(detector, test, out, overwrite=True).scores  # the demo owns its folder
    value = auroc(np.array(labels), np.array([scores[str(p)] for p in test]))
    kinds = ", ".join(f"{p.name}" for p in defect_dirs)
    print(f"demo: {len(test)} test images (nominal + {kinds}); image AUROC = {value:.3f}")
    flagged = np.array([not scores[str(p)] <= 0.5 for p in test])  # pred_label at the learned threshold
    is_defect = np.array(labels) == 1
    print(f"demo: flagged at the detector's own threshold: {flagged[~is_defect].sum()} of {(~is_defect).sum()} "
          f"nominal, {flagged[is_defect].sum()} of {is_defect.sum()} defective")
    print(f"demo: overlays in {out}/overlays, predictions in {out}/predictions.csv")
    return value
