"""The station database: one engine for a SQLite file (the default, beside the models) or a
PostgreSQL server, migrated to the newest schema when opened.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, so the service's
worker threads and several processes on one machine can share the file. PostgreSQL URLs without a
driver use psycopg 3 (``postgresql://`` -> ``postgresql+psycopg://``); concurrent start-ups take an
advisory lock so only one migrates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import NullPool, QueuePool

from ..settings import DATABASE_FILE

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x76616E64  # "vand": the advisory lock id concurrent PostgreSQL start-ups share
SQLITE_BUSY_MS = 30_000


class DatabaseError(OSError):
    """The database cannot be opened or migrated (the message names it, with the password hidden)."""


def default_url(station_dir: Path) -> str:
    """The embedded default: ``station.sqlite`` in the service's own folder beside the models."""
    return f"sqlite:///{Path(station_dir) / DATABASE_FILE}"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` (psycopg 3, the driver the serve extra installs) and file paths."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # The driver's own transaction handling (BEGIN only before a write) breaks savepoints and read
    # snapshots; SQLAlchemy emits BEGIN itself instead (_sqlite_begin).
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock at BEGIN (waiting up to the busy timeout): a transaction that read
    # first and wrote later could otherwise fail at once when another writer committed in between.
    write = connection.get_execution_options().get("vandal_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """An engine over ``url`` (a SQLAlchemy URL or a SQLite file path), migrated on open."""

    def __init__(self, url: str, migrate: bool = True):
        try:
            self.url = make_url(normalise_url(url))
        except ArgumentError as error:
            raise DatabaseError(f"--database {url!r} is not a database URL ({error}); give a file path, "
                                "sqlite:///FILE or postgresql://USER:PASSWORD@HOST/NAME") from error
        self.shown = self.url.render_as_string(hide_password=True)
        try:
            self.engine: Engine = self._create_engine()
        except NoSuchModuleError as error:
            raise DatabaseError(f"--database {self.shown}: unknown kind of database; give a file path, "
                                "sqlite:///FILE or postgresql://USER:PASSWORD@HOST/NAME") from error
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _create_engine(self) -> Engine:
        if self.url.get_backend_name() == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # Pooled connections (opening one and setting its pragmas cost more than a recorded insert);
            # they are shared between worker threads, one at a time, hence check_same_thread off.
            memory = self.url.database in (None, "", ":memory:")
            pooling: dict[str, Any] = {"poolclass": NullPool} if memory else {
                "poolclass": QueuePool, "pool_size": 8, "max_overflow": 8}
            engine = create_engine(self.url, **pooling, connect_args={"check_same_thread": False,
                                                                      "timeout": SQLITE_BUSY_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        try:
            return create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        except ImportError as error:
            raise DatabaseError(f"database {self.shown}: its driver is not installed ({error}); for PostgreSQL "
                                "install the serve extra, pip install 'vandal[serve]' (psycopg)") from error

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there already)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as error:
            raise DatabaseError(f"cannot open the database {self.shown}: {error.orig}; check --database "
                                "(and that the server runs and accepts this user)") from error

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on leaving (rolled back on an error)."""
        with self.engine.connect() as connection:
            connection.execution_options(vandal_write=True)
            with connection.begin():
                yield connection

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading."""
        with self.engine.connect() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
