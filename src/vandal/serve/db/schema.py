"""The station's tables (SQLAlchemy 2 Core): inspections, reviews, model versions, API keys, audit,
and the files watched folders have taken.

The Alembic migrations in ``migrations/`` create exactly these; a change here needs a new migration.
Times are UTC, stored naive (SQLite has no time zones) and given back aware by the repositories.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

inspections = Table(
    "inspections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime, nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", Integer, nullable=True),
    Column("file", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),  # bytes of the uploaded file
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("pred_score", Float, nullable=False),
    Column("pred_label", Boolean, nullable=False),
    Column("image_threshold", Float, nullable=False),
    Column("pixel_threshold", Float, nullable=False),
    Column("key_name", String(64), nullable=True),  # None: an open (no-auth) station
    Column("source", String(32), nullable=False, server_default="api"),  # api, watch, ...
    Column("overlay_sha256", String(64), nullable=True),
    Index("ix_inspections_model_id", "model", "id"),
    Index("ix_inspections_time", "time"),
    Index("ix_inspections_sha256", "sha256"),
)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("inspection_id", Integer, ForeignKey("inspections.id", ondelete="CASCADE"), nullable=False),
    Column("time", DateTime, nullable=False),
    Column("verdict", String(16), nullable=False),  # good | defect
    Column("note", Text, nullable=True),
    Column("key_name", String(64), nullable=True),
    Index("ix_reviews_inspection_id", "inspection_id", "id"),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("time", DateTime, nullable=False),
    Column("action", String(32), nullable=False),  # create, overwrite, references, rollback, found
    Column("references", Integer, nullable=True),
    Column("image_threshold", Float, nullable=True),
    Column("key_name", String(64), nullable=True),
    Column("stamp", String(255), nullable=True),  # the bundle files' identity when this version was live
    Column("snapshot", String(255), nullable=True),  # folder of the frozen copy, relative to the station dir
    Column("source_version", Integer, nullable=True),  # rollback: the version restored
    Column("detail", Text, nullable=True),
    UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
    Index("ix_model_versions_stamp", "model", "stamp"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("prefix", String(16), nullable=False),  # the key's public part, to find its row
    Column("hash", String(255), nullable=False),  # argon2id of the whole key
    Column("created", DateTime, nullable=False),
    Column("revoked", DateTime, nullable=True),
    Index("ix_api_keys_prefix", "prefix"),
    Index("ix_api_keys_name", "name"),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime, nullable=False),
    Column("actor", String(64), nullable=True),  # key name; None: open station or the CLI
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=True),
    Column("detail", Text, nullable=True),  # JSON
    Index("ix_audit_time", "time"),
)

watched_files = Table(
    "watched_files", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime, nullable=False),
    Column("model", String(64), nullable=False),
    Column("folder", String(1024), nullable=False),  # the watched folder, resolved
    Column("file", String(255), nullable=False),  # the file's name in it
    Column("sha256", String(64), nullable=False),  # its content: rewritten with new content, it is new
    Column("outcome", Text, nullable=False),  # "inspection 12", "unreadable: ..."
    UniqueConstraint("model", "folder", "file", "sha256", name="uq_watched_files_file"),
)
