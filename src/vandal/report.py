"""Writing a prediction run to disk: predictions.csv, overlays/, masks/, maps/ (and skipped.csv)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .atomic import atomic_write_bytes
from .data.images import UnreadableImageError, decode_ahead
from .outputs import CSV_HEADER, npy_bytes, png_bytes, unique_stems, write_csv
from .scoring.calibration import DECISION_LEVEL
from .visualize import mask_image, overlay

if TYPE_CHECKING:
    from .detector import Detector
    from .prediction import Prediction


def _scored(detector: Detector, paths: list[Path]) -> Iterator[tuple[Path, object, object]]:
    """(path, image or its UnreadableImageError, prediction or None), in input order."""
    if detector.transductive:
        # Transductive: every image must be seen before any is scored; decode again for overlays.
        readable = [p for p, image in decode_ahead(paths) if not isinstance(image, UnreadableImageError)]
        predictions = iter(detector.predict(readable)) if readable else iter(())
        for path, image in decode_ahead(paths):
            yield path, image, None if isinstance(image, UnreadableImageError) else next(predictions)
        return
    for path, image in tqdm(decode_ahead(paths), total=len(paths), desc="predict", unit="img",
                            disable=not detector.progress):
        prediction = None if isinstance(image, UnreadableImageError) else detector.predict_image(image, str(path))
        yield path, image, prediction


@dataclass
class RunReport:
    """What a prediction run wrote: each scored path's ``pred_score``, the skipped paths, a summary."""

    scores: dict[str, float]
    skipped: list[str]
    summary: str


def prediction_files(stem: str, image: np.ndarray, prediction: Prediction, level: float,
                     save_maps: bool) -> dict[str, bytes]:
    """One image's output files, encoded: ``{path relative to the run folder: bytes}`` (overlay and mask
    PNGs, and the float16 map with ``save_maps``). Shared by the local and the Ray engine."""
    files = {f"overlays/{stem}.png": png_bytes(overlay(image, prediction.anomaly_map, level=level,
                                                       mask=prediction.pred_mask)),
             f"masks/{stem}.png": png_bytes(mask_image(prediction.pred_mask))}
    if save_maps:
        files[f"maps/{stem}.npy"] = npy_bytes(prediction.anomaly_map.astype(np.float16))
    return files


def prediction_row(path: str, pred_score: float, pred_label: bool, map_file: str) -> list[str]:
    """One ``predictions.csv`` row (:data:`~vandal.outputs.CSV_HEADER`)."""
    return [path, f"{pred_score:.6f}", str(pred_label).lower(), map_file]


def finish_run(out: Path, rows: list[list[str]], skipped: list[list[str]], scores: dict[str, float]) -> RunReport:
    """Write ``predictions.csv`` (and ``skipped.csv``) and sum the run up."""
    write_csv(out / "predictions.csv", CSV_HEADER, rows)
    if skipped:
        write_csv(out / "skipped.csv", ["path", "reason"], skipped)
    flagged = sum(row[2] == "true" for row in rows)
    summary = (f"{len(rows)} image(s) scored, {flagged} flagged anomalous"
               f"{f', {len(skipped)} skipped (see skipped.csv)' if skipped else ''}; results in {out}/predictions.csv")
    return RunReport(scores=scores, skipped=[row[0] for row in skipped], summary=summary)


def write_outputs(detector: Detector, paths: list[Path], out: Path, save_maps: bool = False,
                  skip_unreadable: bool = False) -> RunReport:
    """Predict every path and write its results.

    Every file is written aside and renamed into place, so an interruption leaves only whole
    files. Unreadable inputs raise :class:`UnreadableImageError` naming the file, or, with
    ``skip_unreadable``, are listed in ``skipped.csv`` with the reason.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = unique_stems([str(p) for p in paths])
    rows, skipped, scores = [], [], {}
    level = detector.config.post.pixel_threshold or DECISION_LEVEL
    stem_of = dict(zip(map(str, paths), stems))
    for path, image, prediction in _scored(detector, paths):
        if isinstance(image, UnreadableImageError):
            if not skip_unreadable:
                raise image
            skipped.append([str(path), str(image)])
            continue
        files = prediction_files(stem_of[str(path)], image, prediction, level, save_maps)
        for name, data in files.items():
            atomic_write_bytes(out / name, data)
        map_file = next((name for name in files if name.startswith("maps/")), "")
        rows.append(prediction_row(str(path), prediction.pred_score, prediction.pred_label, map_file))
        scores[str(path)] = prediction.pred_score
    return finish_run(out, rows, skipped, scores)
