"""What the watched folders have taken (a :class:`~vandal.serve.watch.SeenFiles` in the station
database): one row per (model, folder, file name, content), so a restart, or another process on the
same database, never scores a file twice."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from .engine import Database
from .schema import watched_files
from .times import utcnow

MAX_OUTCOME = 2000


class WatchedFiles:
    """The files taken by watched folders, in ``db``."""

    def __init__(self, db: Database):
        self.db = db

    def seen(self, model: str, folder: str, file: str, sha256: str) -> bool:
        c = watched_files.c
        with self.db.connect() as conn:
            found = conn.execute(select(c.id).where(c.model == model, c.folder == folder, c.file == file,
                                                    c.sha256 == sha256).limit(1)).first()
        return found is not None

    def add(self, model: str, folder: str, file: str, sha256: str, outcome: str) -> None:
        try:
            with self.db.begin() as conn:
                conn.execute(insert(watched_files).values(time=utcnow(), model=model, folder=folder, file=file,
                                                          sha256=sha256, outcome=outcome[:MAX_OUTCOME]))
        except IntegrityError:
            pass  # taken already (another process watching the same folder): once is what counts
