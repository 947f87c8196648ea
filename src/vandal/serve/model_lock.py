"""One writer per model across every process of a station: two processes adding references to one
model at once must not both start from the same version (the second save would drop the first's
references), so a change holds this lock from loading the model to recording its new version.

On PostgreSQL (processes possibly on several machines) the lock is a transaction-level advisory
lock keyed by the model's name; on SQLite (processes on one machine) it is ``flock`` on a file in
the station folder. Within a process the model store's own lock orders threads first.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text

from .db import Database


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on one machine (``flock`` on ``path``; a no-op where fcntl
    is missing: Windows, where one process per models folder is assumed)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_key(name: str) -> int:
    """A model name -> the signed 64-bit key of its advisory lock."""
    digest = hashlib.sha256(f"vandal-model:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def model_lock(db: Database, station_dir: Path, name: str) -> Iterator[None]:
    """Hold the station-wide write lock of model ``name`` (waits for another process's change to end)."""
    if db.dialect == "postgresql":
        with db.begin() as conn:  # released when this transaction ends, also if the process dies
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
            yield
    else:
        with file_lock(Path(station_dir) / "locks" / f"{name}.lock"):
            yield
