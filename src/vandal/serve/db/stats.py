"""A model's inspections per hour or day: counts scored / flagged / reviewed, the false-alarm and
miss rates the reviews show, and score quantiles. Pure over the rows :func:`records.score_rows`
gives, so SQLite and PostgreSQL answer the same."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np

from .times import shown

BUCKETS = ("hour", "day")
QUANTILES = (0.05, 0.5, 0.95, 0.99)
HISTOGRAM_BINS = 20


def bucket_start(moment: datetime, bucket: str) -> datetime:
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"bucket: {bucket!r} is not one of {', '.join(BUCKETS)}")


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summarise(rows: Iterable[Any]) -> dict[str, Any]:
    """Rows of (time, pred_score, pred_label, verdict) -> one bucket's figures.

    false_alarm_rate: of the flagged inspections reviewed, the share reviewed good; miss_rate: of
    the passed inspections reviewed, the share reviewed defect (None where nothing was reviewed).
    """
    rows = list(rows)
    flagged = [r for r in rows if r.pred_label]
    passed = [r for r in rows if not r.pred_label]
    flagged_reviewed = [r for r in flagged if r.verdict is not None]
    passed_reviewed = [r for r in passed if r.verdict is not None]
    false_alarms = sum(r.verdict == "good" for r in flagged_reviewed)
    misses = sum(r.verdict == "defect" for r in passed_reviewed)
    scores = np.array([r.pred_score for r in rows], dtype=np.float64)
    quantiles = ({f"p{round(q * 100)}": float(np.quantile(scores, q)) for q in QUANTILES} if scores.size else
                 {f"p{round(q * 100)}": None for q in QUANTILES})
    return {"scored": len(rows), "flagged": len(flagged), "reviewed": len(flagged_reviewed) + len(passed_reviewed),
            "false_alarms": false_alarms, "misses": misses,
            "false_alarm_rate": rate(false_alarms, len(flagged_reviewed)),
            "miss_rate": rate(misses, len(passed_reviewed)), "score_quantiles": quantiles}


def histogram(rows: Iterable[Any], bins: int = HISTOGRAM_BINS) -> dict[str, list]:
    """Scores -> ``{"edges", "counts"}``: ``bins`` equal bins from 0 to the 99th percentile or 1
    (whichever is higher; the decision level is 0.5 unless a model sets its own), higher scores in the last."""
    scores = np.array([r.pred_score for r in rows], dtype=np.float64)
    top = max(1.0, float(np.quantile(scores, 0.99))) if scores.size else 1.0
    edges = np.linspace(0.0, top, bins + 1)
    counts, _ = np.histogram(np.clip(scores, 0.0, top), bins=edges)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def bucketed(rows: Iterable[Any], bucket: str) -> list[dict[str, Any]]:
    """Rows (oldest first) -> one entry per bucket holding any, oldest first: ``{"start", ...summarise}``."""
    groups: dict[datetime, list[Any]] = {}
    for row in rows:
        groups.setdefault(bucket_start(row.time, bucket), []).append(row)
    return [{"start": shown(start), **summarise(group)} for start, group in sorted(groups.items())]
