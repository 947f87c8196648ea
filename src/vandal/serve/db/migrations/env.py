"""Alembic's environment for the station database: migrations run on the connection the service
hands over (``config.attributes["connection"]``), never on a URL read from a file."""

from __future__ import annotations

from alembic import context

from vandal.serve.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("vandal's migrations run through vandal.serve.db.engine.migrate(), which passes the connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
