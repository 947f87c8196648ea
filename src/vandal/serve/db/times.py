"""UTC times as the tables store them (naive) and as the API shows them (ISO 8601, aware)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Now, UTC, naive (the columns' convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def stored(moment: datetime) -> datetime:
    """An aware or naive (taken as UTC) time -> the naive UTC a column holds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def shown(moment: datetime | None) -> str | None:
    """A stored time -> ``2026-12-03T09:40:00.123Z``."""
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time from a query (``Z`` or an offset; none means UTC) -> naive UTC; ValueError names ``what``."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"{what}: {text!r} is not an ISO 8601 time, e.g. 2026-12-03T09:00:00Z") from error
    return stored(moment)
