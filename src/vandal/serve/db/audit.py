"""The audit trail: who created, changed, rolled back or deleted a model, reviewed an inspection,
added or revoked a key, and when. Append-only; written in the same transaction as the change."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from .schema import audit
from .times import shown, utcnow

MAX_PAGE = 500


def record(conn: Connection, actor: str | None, action: str, target: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    conn.execute(insert(audit).values(time=utcnow(), actor=actor, action=action, target=target,
                                      detail=None if detail is None else json.dumps(detail, sort_keys=True)))


def list_audit(conn: Connection, *, action: str | None = None, actor: str | None = None,
               since: datetime | None = None, until: datetime | None = None, cursor: int | None = None,
               limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """One page of entries, newest first -> (entries, the next page's cursor or None)."""
    limit = max(1, min(limit, MAX_PAGE))
    statement = select(audit)
    for column, value in ((audit.c.action, action), (audit.c.actor, actor)):
        if value is not None:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(audit.c.time >= since)
    if until is not None:
        statement = statement.where(audit.c.time < until)
    if cursor is not None:
        statement = statement.where(audit.c.id < cursor)
    rows = conn.execute(statement.order_by(audit.c.id.desc()).limit(limit + 1)).all()
    entries = [{"id": row.id, "time": shown(row.time), "actor": row.actor, "action": row.action,
                "target": row.target, "detail": None if row.detail is None else json.loads(row.detail)}
               for row in rows[:limit]]
    return entries, (entries[-1]["id"] if len(rows) > limit else None)
