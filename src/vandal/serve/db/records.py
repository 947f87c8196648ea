"""Inspection records and their reviews: written once per scored image, listed newest first with
cursor pagination, reviewed any number of times (the latest review is the verdict, all are kept).

Every function takes a SQLAlchemy ``Connection``; writers expect one in a transaction
(:meth:`Database.begin`), so a record and whatever goes with it commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from .schema import inspections, reviews
from .times import shown, utcnow

VERDICTS = ("good", "defect")
VERDICT_FILTERS = (*VERDICTS, "none")  # none: not reviewed yet
MAX_PAGE = 500


@dataclass(frozen=True)
class NewInspection:
    """What the service knows about one scored image when it records it."""

    model: str
    version: int | None
    file: str
    sha256: str
    size: int
    pred_score: float
    pred_label: bool
    image_threshold: float
    pixel_threshold: float
    key_name: str | None = None
    width: int | None = None
    height: int | None = None
    source: str = "api"
    overlay_sha256: str | None = None


def latest_verdict() -> Any:
    """The newest review's verdict of the outer inspection row (a correlated scalar subquery)."""
    return (select(reviews.c.verdict).where(reviews.c.inspection_id == inspections.c.id)
            .order_by(reviews.c.id.desc()).limit(1).correlate(inspections).scalar_subquery())


def record_json(row: Row | dict) -> dict[str, Any]:
    """A row (with its ``verdict``) -> the API's inspection object."""
    data = dict(row._mapping) if isinstance(row, Row) else dict(row)
    return {"id": data["id"], "time": shown(data["time"]), "model": data["model"], "version": data["version"],
            "file": data["file"], "sha256": data["sha256"], "size": data["size"], "width": data["width"],
            "height": data["height"], "pred_score": data["pred_score"], "pred_label": bool(data["pred_label"]),
            "verdict": data.get("verdict"), "image_threshold": data["image_threshold"],
            "pixel_threshold": data["pixel_threshold"], "key": data["key_name"], "source": data["source"],
            "overlay": data["overlay_sha256"] is not None, "overlay_sha256": data["overlay_sha256"]}


def add_inspections(conn: Connection, items: Sequence[NewInspection], time: datetime | None = None
                    ) -> list[dict[str, Any]]:
    """Insert one row per item (in order) -> their API objects, ids included."""
    if not items:
        return []
    moment = time or utcnow()
    rows = [{**asdict(item), "time": moment} for item in items]
    ids = conn.execute(insert(inspections).returning(inspections.c.id, sort_by_parameter_order=True), rows).scalars()
    return [record_json({**row, "id": id_, "verdict": None}) for row, id_ in zip(rows, ids)]


def filtered(statement: Any, model: str | None = None, label: bool | None = None, verdict: str | None = None,
             since: datetime | None = None, until: datetime | None = None) -> Any:
    """``statement`` over inspections narrowed by the API's filters (``verdict``: good, defect or none)."""
    if model is not None:
        statement = statement.where(inspections.c.model == model)
    if label is not None:
        statement = statement.where(inspections.c.pred_label == label)
    if verdict is not None:
        if verdict not in VERDICT_FILTERS:
            raise ValueError(f"verdict: {verdict!r} is not one of {', '.join(VERDICT_FILTERS)}")
        latest = latest_verdict()
        statement = statement.where(latest.is_(None) if verdict == "none" else latest == verdict)
    if since is not None:
        statement = statement.where(inspections.c.time >= since)
    if until is not None:
        statement = statement.where(inspections.c.time < until)
    return statement


def list_inspections(conn: Connection, *, model: str | None = None, label: bool | None = None,
                     verdict: str | None = None, since: datetime | None = None, until: datetime | None = None,
                     cursor: int | None = None, limit: int = 50) -> tuple[list[dict[str, Any]], int | None]:
    """One page, newest first -> (inspections, the cursor of the next page or None at the end)."""
    limit = max(1, min(limit, MAX_PAGE))
    statement = filtered(select(inspections, latest_verdict().label("verdict")), model, label, verdict, since, until)
    if cursor is not None:
        statement = statement.where(inspections.c.id < cursor)
    rows = conn.execute(statement.order_by(inspections.c.id.desc()).limit(limit + 1)).all()
    page = [record_json(row) for row in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


def get_inspection(conn: Connection, inspection_id: int) -> dict[str, Any] | None:
    """One inspection with all its reviews (oldest first), or None."""
    row = conn.execute(select(inspections, latest_verdict().label("verdict"))
                       .where(inspections.c.id == inspection_id)).first()
    if row is None:
        return None
    record = record_json(row)
    record["reviews"] = [review_json(r) for r in conn.execute(
        select(reviews).where(reviews.c.inspection_id == inspection_id).order_by(reviews.c.id))]
    return record


def review_json(row: Row) -> dict[str, Any]:
    data = row._mapping
    return {"id": data["id"], "inspection_id": data["inspection_id"], "time": shown(data["time"]),
            "verdict": data["verdict"], "note": data["note"], "key": data["key_name"]}


def add_review(conn: Connection, inspection_id: int, verdict: str, note: str | None = None,
               key_name: str | None = None) -> dict[str, Any] | None:
    """Record a review (superseding earlier ones for the verdict) -> it, or None for no such inspection."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    if conn.execute(select(inspections.c.id).where(inspections.c.id == inspection_id)).first() is None:
        return None
    new_id = conn.execute(insert(reviews).values(inspection_id=inspection_id, time=utcnow(), verdict=verdict,
                                                 note=note, key_name=key_name).returning(reviews.c.id)).scalar_one()
    row = conn.execute(select(reviews).where(reviews.c.id == new_id)).one()
    return review_json(row)


def verdicts(conn: Connection, inspection_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The inspections among ``inspection_ids`` that exist -> {id: {"model", "sha256", "verdict", ...}}."""
    rows = conn.execute(select(inspections.c.id, inspections.c.model, inspections.c.sha256, inspections.c.file,
                               latest_verdict().label("verdict"))
                        .where(inspections.c.id.in_(list(inspection_ids)))).all()
    return {row.id: dict(row._mapping) for row in rows}


def count_inspections(conn: Connection, model: str | None = None) -> int:
    statement = select(func.count()).select_from(inspections)
    if model is not None:
        statement = statement.where(inspections.c.model == model)
    return int(conn.execute(statement).scalar_one())


def score_rows(conn: Connection, model: str, since: datetime | None = None, until: datetime | None = None
               ) -> list[Row]:
    """(time, pred_score, pred_label, verdict) of a model's inspections in a time range, oldest first."""
    statement = filtered(select(inspections.c.time, inspections.c.pred_score, inspections.c.pred_label,
                                latest_verdict().label("verdict")), model, since=since, until=until)
    return list(conn.execute(statement.order_by(inspections.c.id)).all())
