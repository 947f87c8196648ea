"""Model versions: every change to a model (create, overwrite, references, rollback, or a bundle
found changed on disk) is one immutable row numbered 1, 2, ... per model name, never reused.

A version knows the bundle ``stamp`` it was live as (files' inode, size, mtime) so any process that
sees a bundle can tell which version it is, and its ``snapshot``: the frozen copy rollback restores.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.exc import IntegrityError

from .schema import model_versions
from .times import shown, utcnow


def version_json(row: Row) -> dict[str, Any]:
    data = row._mapping
    return {"version": data["version"], "time": shown(data["time"]), "action": data["action"],
            "references": data["references"], "image_threshold": data["image_threshold"], "by": data["key_name"],
            "source_version": data["source_version"]}


def next_number(conn: Connection, model: str) -> int:
    return int(conn.execute(select(func.coalesce(func.max(model_versions.c.version), 0))
                            .where(model_versions.c.model == model)).scalar_one()) + 1


def add_version(conn: Connection, model: str, action: str, *, references: int | None = None,
                image_threshold: float | None = None, key_name: str | None = None, stamp: str | None = None,
                snapshot: str | None = None, source_version: int | None = None, detail: str | None = None,
                attempts: int = 5) -> dict[str, Any]:
    """Append the model's next version -> its API object. Two writers racing for one number: the
    unique (model, version) constraint refuses the second, which takes the next number."""
    for attempt in range(attempts):
        number = next_number(conn, model)
        try:
            with conn.begin_nested():
                conn.execute(insert(model_versions).values(
                    model=model, version=number, time=utcnow(), action=action, references=references,
                    image_threshold=image_threshold, key_name=key_name, stamp=stamp, snapshot=snapshot,
                    source_version=source_version, detail=detail))
        except IntegrityError:
            if attempt == attempts - 1:
                raise
            continue
        return version_json(get_row(conn, model, number))
    raise AssertionError("unreachable")


def get_row(conn: Connection, model: str, version: int) -> Row:
    return conn.execute(select(model_versions).where(model_versions.c.model == model,
                                                     model_versions.c.version == version)).one()


def get_version(conn: Connection, model: str, version: int) -> Row | None:
    """One version's row (its ``snapshot`` included), or None."""
    return conn.execute(select(model_versions).where(model_versions.c.model == model,
                                                     model_versions.c.version == version)).first()


def latest(conn: Connection, model: str) -> Row | None:
    return conn.execute(select(model_versions).where(model_versions.c.model == model)
                        .order_by(model_versions.c.version.desc()).limit(1)).first()


def version_of_stamp(conn: Connection, model: str, stamp: str) -> int | None:
    """The newest version that was live as ``stamp`` (None: the bundle changed outside the service)."""
    return conn.execute(select(model_versions.c.version).where(model_versions.c.model == model,
                                                               model_versions.c.stamp == stamp)
                        .order_by(model_versions.c.version.desc()).limit(1)).scalar()


def list_versions(conn: Connection, model: str) -> list[dict[str, Any]]:
    """A model's versions, newest first."""
    rows = conn.execute(select(model_versions).where(model_versions.c.model == model)
                        .order_by(model_versions.c.version.desc()))
    return [version_json(row) for row in rows]
