"""One writer per model across processes: two ``vandal serve`` processes sharing a models folder (and
a database) must not both load version N, add references, and save over each other.

On PostgreSQL a session advisory lock per model name (works across machines); otherwise an
exclusive ``flock`` on ``DIR/.vandal-serve/locks/NAME.lock`` (processes on one machine). Held
around every change to a bundle, after the process's own lock for the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from .db import Database

try:
    import fcntl
except ImportError:  # Windows: one process per models folder
    fcntl = None  # type: ignore[assignment]


def lock_key(name: str) -> int:
    """A model name -> a signed 64-bit advisory lock id (stable across processes and machines)."""
    return int.from_bytes(hashlib.sha256(f"vandal-model:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def model_lock(db: Database, folder: Path, name: str) -> Iterator[None]:
    """Hold the cross-process write lock of model ``name`` (``folder``: where lock files go)."""
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
                conn.commit()
        return
    if fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
