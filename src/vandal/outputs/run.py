"""Writing a prediction run to disk: predictions.csv, overlays/, masks/, maps/ (and skipped.csv).

predictions.csv columns: ``path, pred_score, pred_label, overlay_file, mask_file, map_file`` (file
columns relative to the output folder; ``map_file`` empty without ``--save-maps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.images import UnreadableImageError
from ..prediction import decision_levels
from .files import CSV_HEADER, BackgroundWriter, safe_cell, unique_stems, write_csv, write_npy, write_png
from .folder import claim
from .visualize import mask_image, overlay

if TYPE_CHECKING:
    from ..runner import Predictor


@dataclass
class RunReport:
    """What a prediction run wrote: each scored path's ``pred_score``, the skipped paths, the CSV rows,
    a summary."""

    scores: dict[str, float]
    skipped: list[str]
    summary: str
    rows: list[dict[str, str]] = field(default_factory=list)


def write_files(out: Path, stem: str, image: np.ndarray, prediction, level: float, save_maps: bool) -> None:
    """One image's overlay, mask and (optionally) map; the decoded image is drawn on in place."""
    write_png(out / "overlays" / f"{stem}.png",
              overlay(image, prediction.anomaly_map, level=level, mask=prediction.pred_mask, out=image))
    write_png(out / "masks" / f"{stem}.png", mask_image(prediction.pred_mask))
    if save_maps:
        write_npy(out / "maps" / f"{stem}.npy", prediction.anomaly_map.astype(np.float16))


def planned_files(stems: list[str], save_maps: bool) -> list[str]:
    """Every file a run may write per image (relative to the output folder), for :func:`~vandal.outputs.folder.claim`."""
    return [f"{d}/{s}.{e}" for s in stems for d, e in (("overlays", "png"), ("masks", "png"))
            + ((("maps", "npy"),) if save_maps else ())]


def prediction_row(path: str, pred_score: float, pred_label: bool, stem: str, save_maps: bool) -> dict[str, str]:
    """One ``predictions.csv`` row (:data:`~vandal.outputs.files.CSV_HEADER`), before CSV escaping."""
    return {"path": path, "pred_score": f"{pred_score:.6f}", "pred_label": str(pred_label).lower(),
            "overlay_file": f"overlays/{stem}.png", "mask_file": f"masks/{stem}.png",
            "map_file": f"maps/{stem}.npy" if save_maps else ""}


def write_tables(out: Path, rows: list[dict[str, str]], skipped: list[list[str]]) -> None:
    """``predictions.csv`` and, when images were skipped, ``skipped.csv``."""
    write_csv(out / "predictions.csv", CSV_HEADER, [[safe_cell(r[k]) for k in CSV_HEADER] for r in rows])
    if skipped:
        write_csv(out / "skipped.csv", ["path", "reason"], skipped)


def run_report(out: Path, rows: list[dict[str, str]], skipped: list[list[str]], scores: dict[str, float]) -> RunReport:
    flagged = sum(row["pred_label"] == "true" for row in rows)
    summary = (f"{len(rows)} image(s) scored, {flagged} flagged anomalous"
               f"{f', {len(skipped)} skipped (see skipped.csv)' if skipped else ''}; results in {out}/predictions.csv")
    return RunReport(scores=scores, skipped=[row[0] for row in skipped], summary=summary, rows=rows)


def write_outputs(detector: Predictor, paths: list[Path], out: Path, save_maps: bool = False,
                  skip_unreadable: bool = False, overwrite: bool = False, image_threshold: float | None = None,
                  pixel_threshold: float | None = None) -> RunReport:
    """Predict every path and write its results into ``out`` (see :mod:`vandal.outputs.folder`).

    Every file is written aside and renamed into place, so an interruption leaves only whole
    files; overlays and masks are encoded on background threads while the next image is scored.
    Unreadable inputs raise :class:`UnreadableImageError` naming the file, or, with
    ``skip_unreadable``, are listed in ``skipped.csv`` with the reason. ``out`` must be new or
    empty unless ``overwrite``, which replaces only an earlier vandal run's files. Thresholds: this
    run's decision levels (None: the detector's).
    """
    stems = unique_stems([str(p) for p in paths])
    rows, skipped, scores = [], [], {}
    level = decision_levels(detector.config.post, image_threshold, pixel_threshold).pixel
    stem_of = dict(zip(map(str, paths), stems))
    with claim(out, planned_files(stems, save_maps), overwrite) as out, BackgroundWriter() as writer:
        for path, image, prediction in detector.predict_stream(paths, image_threshold=image_threshold,
                                                               pixel_threshold=pixel_threshold):
            if isinstance(image, UnreadableImageError):
                if not skip_unreadable:
                    raise image
                skipped.append([safe_cell(str(path)), str(image)])
                continue
            assert prediction is not None  # a decoded image always has one
            stem = stem_of[str(path)]
            writer.submit(partial(write_files, out, stem, image, prediction, level, save_maps), image.size // 3)
            rows.append(prediction_row(str(path), prediction.pred_score, prediction.pred_label, stem, save_maps))
            scores[str(path)] = prediction.pred_score
        writer.close()
        write_tables(out, rows, skipped)
    return run_report(out, rows, skipped, scores)
