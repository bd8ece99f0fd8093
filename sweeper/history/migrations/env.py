"""Alembic's environment for the history: always given an open connection by
sweeper/history/store.py (the CLI's or the submitting side's), never run by a job."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
