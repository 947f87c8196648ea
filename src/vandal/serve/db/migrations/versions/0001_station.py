"""The station: inspections, reviews, model versions, API keys, audit.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("pred_score", sa.Float, nullable=False),
        sa.Column("pred_label", sa.Boolean, nullable=False),
        sa.Column("image_threshold", sa.Float, nullable=False),
        sa.Column("pixel_threshold", sa.Float, nullable=False),
        sa.Column("key_name", sa.String(64), nullable=True),
        sa.Column("source", sa.String(32), nullable=False, server_default="api"),
        sa.Column("overlay_sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_inspections_model_id", "inspections", ["model", "id"])
    op.create_index("ix_inspections_time", "inspections", ["time"])
    op.create_index("ix_inspections_sha256", "inspections", ["sha256"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.Integer, sa.ForeignKey("inspections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("key_name", sa.String(64), nullable=True),
    )
    op.create_index("ix_reviews_inspection_id", "reviews", ["inspection_id", "id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("references", sa.Integer, nullable=True),
        sa.Column("image_threshold", sa.Float, nullable=True),
        sa.Column("key_name", sa.String(64), nullable=True),
        sa.Column("stamp", sa.String(255), nullable=True),
        sa.Column("snapshot", sa.String(255), nullable=True),
        sa.Column("source_version", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_stamp", "model_versions", ["model", "stamp"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("revoked", sa.DateTime, nullable=True),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_index("ix_api_keys_name", "api_keys", ["name"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_audit_time", "audit", ["time"])


def downgrade() -> None:
    for table in ("audit", "api_keys", "model_versions", "reviews", "inspections"):
        op.drop_table(table)
