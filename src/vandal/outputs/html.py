"""``report.html`` beside ``predictions.csv``: a page a person can open after ``vandal predict --report``.

Built from what the run wrote (``predictions.csv``, ``skipped.csv``, the overlays), so it shows
exactly the saved results: a summary (counts, threshold, model), the flagged images first and
then the rest by score, each with its overlay as a thumbnail linking to the full-size files.
Self-contained: styles inline, no scripts, images by relative links (move the folder whole).
"""

from __future__ import annotations

import csv
import html
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from .. import __version__
from ..atomic import atomic_write_text
from ..prediction import decision_levels
from .files import unique_stems

if TYPE_CHECKING:
    from ..runner import Predictor

REPORT_FILE = "report.html"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 0; color: #1d232b;
       background: #f6f7f9; }
header { background: #18202b; color: #fff; padding: 0.8rem 1.5rem; }
header h1 { margin: 0; font-size: 1.25rem; }
main { max-width: 1400px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
.summary { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1.2rem; background: #fff;
           border: 1px solid #d9dee4; border-radius: 8px; padding: 0.9rem 1.2rem; }
.summary dt { color: #66707c; } .summary dd { margin: 0; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 0.6rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 0.8rem; }
figure { margin: 0; background: #fff; border: 1px solid #d9dee4; border-radius: 8px; overflow: hidden;
         border-top: 5px solid #2e7d32; }
figure.flagged { border-top-color: #c62828; }
figure img { display: block; width: 100%; aspect-ratio: 1 / 1; object-fit: contain; background: #111; }
figcaption { padding: 0.4rem 0.55rem; font-size: 0.85rem; overflow-wrap: anywhere; }
.verdict { float: right; font-weight: 700; color: #2e7d32; } .flagged .verdict { color: #c62828; }
.links a { margin-right: 0.6rem; } .muted { color: #66707c; }
table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #d9dee4; padding: 0.3rem 0.6rem; }
"""


@dataclass
class Row:
    """One scored image as predictions.csv records it."""

    path: str
    pred_score: float
    pred_label: bool
    overlay: str | None
    mask: str | None
    map_file: str | None


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _score(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_rows(out: Path) -> list[Row]:
    """predictions.csv -> rows; overlay and mask from their columns, else (older files) from the
    stems the run gave its outputs, when those files exist."""
    records = _read_csv(out / "predictions.csv")
    stems = unique_stems([r["path"] for r in records])

    def existing(column: str, record: dict[str, str], folder: str, stem: str) -> str | None:
        if record.get(column):
            return record[column]
        guess = f"{folder}/{stem}.png"
        return guess if (out / guess).is_file() else None

    return [Row(r["path"], _score(r["pred_score"]), r["pred_label"].lower() == "true",
                existing("overlay_file", r, "overlays", stem), existing("mask_file", r, "masks", stem),
                r.get("map_file") or None) for r, stem in zip(records, stems)]


def ordered(rows: list[Row]) -> list[Row]:
    """Flagged images first, then by score, highest first (NaN scores lead: they are flagged)."""
    def key(row: Row) -> tuple:
        score = row.pred_score
        return (not row.pred_label, -(score if score == score else float("inf")), row.path)

    return sorted(rows, key=key)


def _link(relative: str) -> str:
    return html.escape(quote(relative.replace(os.sep, "/")))


def _card(row: Row) -> str:
    name = html.escape(row.path)
    verdict = "anomalous" if row.pred_label else "normal"
    image = (f'<a href="{_link(row.overlay)}"><img src="{_link(row.overlay)}" alt="{name}" loading="lazy"></a>'
             if row.overlay else "")
    links = [f'<a href="{_link(target)}">{label}</a>' for label, target in
             (("overlay", row.overlay), ("mask", row.mask), ("map", row.map_file)) if target]
    return (f'<figure class="{"flagged" if row.pred_label else "normal"}">{image}<figcaption>'
            f'<span class="verdict">{verdict}</span>score {row.pred_score:.3f}<br>{name}'
            f'<div class="links">{" ".join(links)}</div></figcaption></figure>')


def _model_lines(detector: Predictor | None, model: str | None) -> list[tuple[str, str]]:
    lines = [("model", model or "(not saved)")]
    if detector is not None:
        lines.append(("backbone", f"{detector.backbone_name} at {detector.input_size} px"))
        lines.append(("references", str(detector.n_references_)))
        lines.append(("score sources", ", ".join(detector.source_names)))
    return lines


def render(rows: list[Row], skipped: list[dict[str, str]], detector: Predictor | None = None,
           model: str | None = None, title: str = "vandal predictions") -> str:
    """The report page as a string."""
    post = detector.config.post if detector is not None else None
    levels = decision_levels(post)
    image_level, pixel_level = levels.image, levels.pixel
    flagged = sum(row.pred_label for row in rows)
    facts = [("scored", str(len(rows))), ("flagged anomalous", str(flagged)), ("normal", str(len(rows) - flagged)),
             ("skipped (unreadable)", str(len(skipped))),
             ("image threshold", f"{image_level:g} on pred_score (anomalous above)"),
             ("pixel threshold", f"{pixel_level:g} on the calibrated map (heat-map scale 0 to {2 * pixel_level:g})"),
             *_model_lines(detector, model),
             ("written", f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by vandal {__version__}")]
    summary = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    ranked = ordered(rows)
    parts = [f"<h2>Flagged ({flagged})</h2>",
             f'<div class="grid">{"".join(_card(r) for r in ranked if r.pred_label)}</div>' if flagged
             else '<p class="muted">No image was flagged.</p>',
             f"<h2>Normal ({len(rows) - flagged}), by score</h2>",
             f'<div class="grid">{"".join(_card(r) for r in ranked if not r.pred_label)}</div>'
             if len(rows) > flagged else '<p class="muted">No image was judged normal.</p>']
    if skipped:
        lines = "".join(f"<tr><td>{html.escape(s.get('path', ''))}</td><td>{html.escape(s.get('reason', ''))}</td></tr>"
                        for s in skipped)
        parts.append(f"<h2>Skipped ({len(skipped)})</h2><table><tr><th>path</th><th>reason</th></tr>{lines}</table>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><header><h1>{html.escape(title)}</h1></header><main><dl class="summary">{summary}</dl>'
            f'{"".join(parts)}</main></body></html>\n')


def write_prediction_report(out: str | os.PathLike, detector: Predictor | None = None,
                            model: str | None = None) -> Path:
    """Write ``out/report.html`` from the run's files in ``out``; returns its path."""
    out = Path(out)
    page = render(read_rows(out), _read_csv(out / "skipped.csv"), detector, model)
    atomic_write_text(out / REPORT_FILE, page)
    return out / REPORT_FILE
