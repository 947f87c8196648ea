"""What the HTML report needs from a cell beyond its metrics: curve points and the worst misses.

Recorded for the first seed of each (category, shots) while the cell's predictions are still in
memory, into ``DIR/report/cells/<category>-k<shots>.json`` with overlay thumbnails of the worst
false negatives and false positives in ``DIR/report/overlays/``; a resumed run keeps the files of
the cells it does not recompute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..atomic import atomic_write_text
from ..data.datasets import CategorySplit
from ..data.images import UnreadableImageError, load_image
from ..outputs.files import write_png
from ..outputs.visualize import overlay
from ..prediction import decision_levels
from .cells import cell_seeds
from .config import EvalConfig
from .curves import image_curves, pixel_curves
from .protocol import CategoryAccumulator

REPORT_DIR = "report"
THUMBNAIL = 320  # longest side of an overlay thumbnail, pixels


def cell_stem(category: str, shots: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{category}-k{shots}")


def misses(labels: np.ndarray, flags: np.ndarray, scores: np.ndarray, worst: int) -> dict[str, list[int]]:
    """Indices of the worst false negatives (defects scored lowest among the missed) and false
    positives (good images scored highest among the flagged), at the detector's own decisions."""
    order = np.argsort(scores, kind="stable")
    missed = [int(i) for i in order if labels[i] and not flags[i]][:worst]
    false_alarms = [int(i) for i in order[::-1] if not labels[i] and flags[i]][:worst]
    return {"false_negatives": missed, "false_positives": false_alarms}


def thumbnail(image: np.ndarray, amap: np.ndarray, mask: np.ndarray, level: float) -> np.ndarray:
    """The image at the map's resolution with the heat map and the ground truth outlined, shrunk."""
    height, width = amap.shape
    if image.shape[:2] != (height, width):
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    drawn = overlay(image, np.asarray(amap, np.float32), level=level, mask=np.asarray(mask, bool))
    scale = THUMBNAIL / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        drawn = np.asarray(Image.fromarray(drawn).resize(size, Image.Resampling.LANCZOS))
    return drawn


class CellDetails:
    """Called by the runner after each cell is scored: ``details(split, shots, seed, accumulator)``."""

    def __init__(self, out_dir: str | Path, config: EvalConfig, worst: int = 4):
        self.root = Path(out_dir) / REPORT_DIR
        self.config = config
        self.worst = worst

    def __call__(self, split: CategorySplit, shots: int, seed: int, acc: CategoryAccumulator) -> None:
        if seed != cell_seeds(shots, self.config.seeds)[0]:
            return
        stem = cell_stem(split.category, shots)
        labels, flags = np.asarray(acc.labels, bool), np.asarray(acc.flags, bool)
        scores = acc.image_scores(self.config.transductive and shots > 0)
        levels = decision_levels(self.config.detector.post)
        level = levels.pixel
        record: dict[str, Any] = {
            "category": split.category, "shots": shots, "seed": seed,
            "image_threshold": levels.image,
            "image": image_curves(labels, scores), "pixel": pixel_curves(acc.masks, acc.maps),
        }
        for kind, indices in misses(labels, flags, np.nan_to_num(scores, nan=np.inf), self.worst).items():
            record[kind] = [self._miss(split, acc, i, f"{stem}-{kind}-{rank}", level, float(scores[i]))
                            for rank, i in enumerate(indices)]
        atomic_write_text(self.root / "cells" / f"{stem}.json", json.dumps(record, allow_nan=True))

    def _miss(self, split: CategorySplit, acc: CategoryAccumulator, index: int, name: str, level: float,
              score: float) -> dict[str, Any]:
        sample = split.test[index]
        entry: dict[str, Any] = {"file": str(sample.path), "defect": sample.defect_type, "score": score,
                                 "overlay": None}
        try:
            image = load_image(sample.path)
        except UnreadableImageError:
            return entry
        relative = f"overlays/{name}.png"
        write_png(self.root / relative, thumbnail(image, acc.maps[index], acc.masks[index], level))
        entry["overlay"] = relative
        return entry


def read_cells(out_dir: str | Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The recorded details by (category, shots); unreadable files are left out."""
    found = {}
    for path in sorted((Path(out_dir) / REPORT_DIR / "cells").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            found[(record["category"], int(record["shots"]))] = record
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
