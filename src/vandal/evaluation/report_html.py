"""``report.html`` of ``vandal evaluate``: the tables, ROC and PR curves per category (image and
pixel), and the worst false negatives and false positives with their overlays.

Rewritten with the tables after every cell, from ``results.json``'s content and the details
recorded by :class:`~vandal.evaluation.report_cells.CellDetails`. Self-contained: styles and
figures (inline SVG) in the page, overlays by relative links under ``report/``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..atomic import atomic_write_text
from .report_cells import REPORT_DIR, read_cells
from .svg import line_chart
from .tables import COLUMNS, DECISION_COLUMNS, decision_rows

REPORT_FILE = "report.html"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 0; color: #1d232b;
       background: #f6f7f9; }
header { background: #18202b; color: #fff; padding: 0.8rem 1.5rem; } header h1 { margin: 0; font-size: 1.25rem; }
main { max-width: 1400px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 0.6rem; } h3 { font-size: 0.95rem; margin: 1rem 0 0.4rem; }
table { border-collapse: collapse; background: #fff; font-size: 0.85rem; margin: 0.4rem 0 1rem; }
td, th { border: 1px solid #d9dee4; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; } tr.mean td { font-weight: 700; }
.figures { display: flex; flex-wrap: wrap; gap: 0.6rem; }
.figures svg { background: #fff; border: 1px solid #d9dee4; border-radius: 6px; }
.misses { display: flex; flex-wrap: wrap; gap: 0.6rem; }
figure { margin: 0; width: 170px; background: #fff; border: 1px solid #d9dee4; border-radius: 6px; overflow: hidden; }
figure img { display: block; width: 100%; } figcaption { padding: 0.3rem 0.4rem; font-size: 0.75rem;
overflow-wrap: anywhere; } .muted { color: #66707c; } dl { display: grid; grid-template-columns: max-content 1fr;
gap: 0.2rem 1rem; } dd { margin: 0; }
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(block: dict[str, Any], with_std: bool) -> str:
    head = "".join(f"<th>{_esc(name)}</th>" for name, _ in COLUMNS)
    lines = [f"<table><tr><th>category</th>{head}</tr>"]
    rows = [(row["category"], row["mean"], row["std"], "") for row in block["rows"]]
    rows.append(("mean", block["mean"]["metrics"], block["mean"]["std"], ' class="mean"'))
    for name, means, stds, cls in rows:
        cells = "".join(f"<td>{_pct(means[key])}" + (f" ± {_pct(stds[key])}" if with_std and stds[key] is not None
                                                      else "") + "</td>" for _, key in COLUMNS)
        lines.append(f"<tr{cls}><td>{_esc(name)}</td>{cells}</tr>")
    return "".join(lines) + "</table>"


def _decisions(runs: list[dict], summary: dict[int, dict[str, Any]]) -> str:
    lines = []
    for k, row, found in decision_rows(runs, summary):
        cells = []
        for _, key in DECISION_COLUMNS:
            values = [d.get(key) for d in found if d.get(key) is not None]
            cells.append(_pct(sum(values) / len(values)) if values else "-")
        lines.append(f"<tr><td>{k}</td><td>{_esc(row['category'])}</td>"
                     + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not lines:
        return ""
    head = "".join(f"<th>{_esc(name)}</th>" for name, _ in DECISION_COLUMNS)
    return ("<h3>Decisions at the detector's own threshold (pred_label), mean over seeds</h3>"
            f"<table><tr><th>shots</th><th>category</th>{head}</tr>{''.join(lines)}</table>")


def _figures(category: str, shots: list[int], cells: dict, runs: dict) -> str:
    charts = []
    for level, metric in (("image", "image"), ("pixel", "pixel")):
        for kind, title, x_label, y_label, key in (
                ("roc", "ROC", "false-positive rate", "true-positive rate", f"{metric}_auroc"),
                ("pr", "precision-recall", "recall", "precision", f"{metric}_ap")):
            series = []
            for k in shots:
                record = cells.get((category, k))
                points = ((record or {}).get(level) or {}).get(kind)
                if points and record:
                    run = runs.get((category, k, record["seed"]), {})
                    value = (run.get("metrics") or {}).get(key)
                    series.append((f"k={k}  {_pct(value)}", points))
            if series:
                charts.append(line_chart(series, f"{level} {title}", x_label, y_label, diagonal=kind == "roc"))
    return f'<div class="figures">{"".join(charts)}</div>' if charts else \
        '<p class="muted">No curves recorded (one class in the test set, or cells from an older run).</p>'


def _misses(record: dict[str, Any]) -> str:
    out, none = [], []
    for kind, title in (("false_negatives", "missed defects (false negatives), lowest scores first"),
                        ("false_positives", "false alarms (false positives), highest scores first")):
        entries = record.get(kind) or []
        if not entries:
            none.append(title.split(" (")[0])
            continue
        cards = []
        for entry in entries:
            image = ""
            if entry.get("overlay"):
                link = _esc(quote(REPORT_DIR + "/" + entry["overlay"]))
                image = f'<a href="{link}"><img src="{link}" alt="{_esc(entry["file"])}" loading="lazy"></a>'
            cards.append(f"<figure>{image}<figcaption>{_esc(Path(entry['file']).name)} ({_esc(entry['defect'])})<br>"
                         f"score {entry['score']:.3f}</figcaption></figure>")
        out.append(f'<h3>k={record["shots"]}: {title}</h3><div class="misses">{"".join(cards)}</div>')
    if none:
        out.append(f'<p class="muted">k={record["shots"]}: no {" and no ".join(none)} at the detector\'s threshold.</p>')
    return "".join(out)


def render(summary: dict[int, dict[str, Any]], config: dict[str, Any], runs: list[dict],
           cells: dict[tuple[str, int], dict]) -> str:
    """The report page as a string."""
    facts = [(key, config.get(key)) for key in ("dataset", "root", "backbone", "protocol", "resolution", "image_score",
                                                "shots", "seeds") if config.get(key) is not None]
    facts.append(("written by", f"vandal {__version__}"))
    parts = ["<dl>" + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts) + "</dl>",
             '<p class="muted">Values x100, mean ± std over seeds. White outlines on the overlays: the ground '
             "truth. Curves and misses: the first seed of each shot count; the legend gives its AUROC / AP.</p>"]
    for k, block in summary.items():
        kind = "zero-shot" if k == 0 else f"{k}-shot"
        parts.append(f"<h2>{kind}</h2>{_table(block, with_std=k != 0)}")
    parts.append(_decisions(runs, summary))
    by_cell = {(r["category"], r["shots"], r["seed"]): r for r in runs}
    shots = list(summary)
    categories = list(dict.fromkeys(row["category"] for block in summary.values() for row in block["rows"]))
    for category in categories:
        parts.append(f"<h2>{_esc(category)}</h2>{_figures(category, shots, cells, by_cell)}")
        for k in shots:
            if (category, k) in cells:
                parts.append(_misses(cells[(category, k)]))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vandal evaluation</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><header><h1>vandal evaluation: {_esc(config.get("dataset", ""))}</h1></header>'
            f'<main>{"".join(parts)}</main></body></html>\n')


def write_evaluation_report(out_dir: str | Path, summary: dict[int, dict[str, Any]], config: dict[str, Any],
                            runs: list[dict]) -> Path:
    """Write ``out_dir/report.html``; returns its path."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / REPORT_FILE, render(summary, config, runs, read_cells(out_dir)))
    return out_dir / REPORT_FILE
