"""Evaluation tables as in the papers' Tables 3-12: per category, a mean row, +- std over seeds.

Values are x100 with one decimal. Columns (papers' order): AUROC-segm, F1-max-segm, AP-segm,
PRO-segm, AUROC-cls, F1-max-cls, AP-cls, then the VAND score and the APRIL-GAN code's AU-PRO
variant (the papers' PRO numbers come from it; PRO-segm is the exact MVTec AD definition).
Standard deviations are population std (numpy's default, ddof=0) over seeds; the mean row's std is
the std over seeds of the mean over categories.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from .cells import METRIC_KEYS, cell_seeds

COLUMNS: tuple[tuple[str, str], ...] = (
    ("AUROC-segm", "pixel_auroc"), ("F1-max-segm", "pixel_f1max"), ("AP-segm", "pixel_ap"),
    ("PRO-segm", "pixel_aupro"), ("AUROC-cls", "image_auroc"), ("F1-max-cls", "image_f1max"),
    ("AP-cls", "image_ap"), ("VAND", "vand"), ("PRO-segm (legacy)", "pixel_aupro_legacy"),
)


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and std of the defined values (None: undefined, e.g. a legacy AU-PRO that is NaN)."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None, None
    return float(np.mean(defined)), float(np.std(defined))


def summarise(runs: list[dict], categories: list[str], shots: list[int], seeds: int) -> dict[int, dict[str, Any]]:
    """Finished runs -> per shot count: ``rows`` (category, mean, std, seeds) and ``mean`` (over categories).

    Only the asked cells count (categories x seeds 0..seeds-1; zero-shot: seed 0). Shot counts
    with no finished cell (zero-shot with a text-free backbone) are left out.
    """
    by_cell = {(r["category"], r["shots"], r["seed"]): r["metrics"] for r in runs}
    summary: dict[int, dict[str, Any]] = {}
    for k in shots:
        wanted_seeds = cell_seeds(k, seeds)
        rows: list[dict[str, Any]] = []
        per_seed: dict[int, list[dict]] = {s: [] for s in wanted_seeds}
        for category in categories:
            found = {s: by_cell[(category, k, s)] for s in wanted_seeds if (category, k, s) in by_cell}
            if not found:
                continue
            for s, metrics in found.items():
                per_seed[s].append(metrics)
            stats = {key: _stats([m.get(key) for m in found.values()]) for key in METRIC_KEYS}
            rows.append({"category": category, "seeds": sorted(found),
                         "mean": {key: v[0] for key, v in stats.items()},
                         "std": {key: v[1] for key, v in stats.items()}})
        if not rows:
            continue
        means = {key: _stats([row["mean"][key] for row in rows])[0] for key in METRIC_KEYS}
        # Seeds every listed category finished: the mean over categories per seed, then its spread.
        complete = [s for s, items in per_seed.items() if len(items) == len(rows)]
        stds = {key: _stats([_stats([m.get(key) for m in per_seed[s]])[0] for s in complete])[1]
                for key in METRIC_KEYS}
        summary[k] = {"rows": rows, "mean": {"metrics": means, "std": stds, "categories": len(rows),
                                             "seeds": complete}}
    return summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(mean: float | None, std: float | None, with_std: bool) -> str:
    if mean is None:
        return "-"
    return f"{_pct(mean)} ± {_pct(std)}" if with_std and std is not None else _pct(mean)


def _title(k: int, block: dict[str, Any], config: dict[str, Any]) -> str:
    seeds = block["mean"]["seeds"] or sorted({s for row in block["rows"] for s in row["seeds"]})
    kind = "zero-shot" if k == 0 else f"{k}-shot, seeds {', '.join(map(str, seeds))}"
    return (f"{config.get('dataset')} | {kind} | backbone {config.get('backbone')} | "
            f"protocol {config.get('protocol')} ({config.get('resolution')})")


def markdown(summary: dict[int, dict[str, Any]], config: dict[str, Any]) -> str:
    """One Markdown table per shot count, with the settings that matter in its heading."""
    headers = ["category"] + [name for name, _ in COLUMNS]
    parts = []
    for k, block in summary.items():
        with_std = k != 0
        lines = [f"### {_title(k, block, config)}", "",
                 "| " + " | ".join(headers) + " |", "|" + "---|" + "---:|" * len(COLUMNS)]
        rows = [(row["category"], row["mean"], row["std"]) for row in block["rows"]]
        rows.append(("**mean**", block["mean"]["metrics"], block["mean"]["std"]))
        for name, means, stds in rows:
            cells = [_cell(means[key], stds[key], with_std) for _, key in COLUMNS]
            lines.append("| " + " | ".join([name] + cells) + " |")
        parts.append("\n".join(lines))
    notes = [f"Values x100, mean ± std over seeds. Image score: {config.get('image_score')}.",
             "PRO-segm: exact AU-PRO (MVTec AD, FPR <= 0.3); PRO-segm (legacy): the APRIL-GAN code's variant."]
    return "\n\n".join(parts + ["\n".join(notes)]) + "\n"


def to_csv(summary: dict[int, dict[str, Any]]) -> str:
    """Long CSV: one line per (shots, category) and a ``mean`` line per shot count; x100, one decimal."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["shots", "category", "n_seeds"]
    for name, _ in COLUMNS:
        header += [name, f"{name} std"]
    writer.writerow(header)
    for k, block in summary.items():
        for row in block["rows"]:
            line = [k, row["category"], len(row["seeds"])]
            for _, key in COLUMNS:
                line += [_pct(row["mean"][key]), _pct(row["std"][key])]
            writer.writerow(line)
        mean = block["mean"]
        line = [k, "mean", len(mean["seeds"])]
        for _, key in COLUMNS:
            line += [_pct(mean["metrics"][key]), _pct(mean["std"][key])]
        writer.writerow(line)
    return buffer.getvalue()


DECISION_COLUMNS = (("defects flagged", "flagged_defects"), ("good flagged", "flagged_good"),
                    ("F1 at threshold", "f1_at_threshold"))


def decision_rows(runs: list[dict], summary: dict[int, dict[str, Any]]):
    """``(shots, summary row, its runs' decisions)`` for every summary row whose runs recorded decisions."""
    for k, block in summary.items():
        for row in block["rows"]:
            found = [r["decisions"] for r in runs if r["category"] == row["category"] and r["shots"] == k
                     and r["seed"] in row["seeds"] and r.get("decisions")]
            if found:
                yield k, row, found


def decisions_markdown(runs: list[dict], summary: dict[int, dict[str, Any]]) -> str:
    """The detector's own decisions at its threshold (pred_label), mean over seeds, next to F1-max."""
    lines = ["### Decisions at the detector's own threshold (pred_label)", "",
             "| shots | category | defects flagged | good flagged | F1 at threshold | F1-max-cls |",
             "|---|---|---:|---:|---:|---:|"]
    for k, row, found in decision_rows(runs, summary):
        cells = [_pct(_stats([d.get(key) for d in found])[0]) for _, key in DECISION_COLUMNS]
        lines.append(f"| {k} | {row['category']} | " + " | ".join(cells)
                     + f" | {_pct(row['mean']['image_f1max'])} |")
    return "\n".join(lines) + "\n" if len(lines) > 4 else ""


def write_tables(summary: dict[int, dict[str, Any]], out_dir: Path, config: dict[str, Any],
                 runs: list[dict] | None = None) -> None:
    """``results.md`` (with the decisions table when ``runs`` carry decisions) and ``results.csv``."""
    text = markdown(summary, config)
    decisions = decisions_markdown(runs or [], summary)
    atomic_write_text(Path(out_dir) / "results.md", text + ("\n" + decisions if decisions else ""))
    atomic_write_text(Path(out_dir) / "results.csv", to_csv(summary))
