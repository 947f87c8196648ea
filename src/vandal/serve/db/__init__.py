"""The station database (SQLAlchemy 2 + Alembic): inspection records and reviews, model versions,
API keys and the audit trail. :class:`Database` opens and migrates it; the modules ``records``,
``versions``, ``keys`` and ``audit`` are the repositories, each function taking a ``Connection``."""

from __future__ import annotations

from .engine import Database, DatabaseError, default_url

__all__ = ["Database", "DatabaseError", "default_url"]
