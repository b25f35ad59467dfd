"""Alembic environment. Run programmatically by Database.migrate (connection sharing)."""

from __future__ import annotations

from alembic import context

from healtrace.storage.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through healtrace.storage.Database.migrate()")
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
