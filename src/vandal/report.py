"""Writing a prediction run to disk: predictions.csv, overlays/, masks/, maps/ (and skipped.csv)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .data.images import UnreadableImageError, decode_ahead
from .outputs import CSV_HEADER, unique_stems, write_csv, write_npy, write_png
from .visualize import mask_image, overlay

if TYPE_CHECKING:
    from .detector import Detector


def write_outputs(detector: "Detector", paths: list[Path], out: Path, save_maps: bool = False,
                  skip_unreadable: bool = False) -> str:
    """Predict every path and write its results; returns a one-line summary.

    Every file is written aside and renamed into place, so an interruption leaves only whole
    files. Unreadable inputs stop the run with an error naming the file, or, with
    ``skip_unreadable``, are listed in ``skipped.csv`` with the reason.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = unique_stems([str(p) for p in paths])
    rows, skipped = [], []
    level = detector.pixel_threshold if detector.pixel_threshold is not None else 0.5
    stem_of = dict(zip(map(str, paths), stems))
    decoded = decode_ahead(list(paths))
    for path, image in tqdm(decoded, total=len(paths), desc="predict", unit="img", disable=not detector.progress):
        stem = stem_of[str(path)]
        if isinstance(image, UnreadableImageError):
            if not skip_unreadable:
                raise SystemExit(f"error: {image}")
            skipped.append([str(path), str(image)])
            continue
        prediction = detector.predict_image(image, str(path))
        write_png(out / "overlays" / f"{stem}.png",
                  overlay(image, prediction.anomaly_map, level=level, mask=prediction.pred_mask))
        write_png(out / "masks" / f"{stem}.png", mask_image(prediction.pred_mask))
        map_file = ""
        if save_maps:
            map_file = f"maps/{stem}.npy"
            write_npy(out / map_file, prediction.anomaly_map.astype(np.float16))
        rows.append([str(path), f"{prediction.pred_score:.6f}", str(prediction.pred_label).lower(), map_file])
    write_csv(out / "predictions.csv", CSV_HEADER, rows)
    if skipped:
        write_csv(out / "skipped.csv", ["path", "reason"], skipped)
    flagged = sum(row[2] == "true" for row in rows)
    return (f"{len(rows)} image(s) scored, {flagged} flagged anomalous"
            f"{f', {len(skipped)} skipped (see skipped.csv)' if skipped else ''}; results in {out}/predictions.csv")
