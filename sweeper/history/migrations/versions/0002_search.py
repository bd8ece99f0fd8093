"""The batch-size search in the history: a run's role (an ordinary run, or a probe of a
search, whose out-of-memory is what the search learned rather than a regression), and the
searches' answers as series of their own.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CELL = ("workload", "model", "system", "mode", "data", "precision", "instances")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="run"))
    op.create_table(
        "search_answers",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sweep", sa.Text, nullable=False),
        sa.Column("workload", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("system", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(50), nullable=False),
        sa.Column("data", sa.String(100), nullable=False),
        sa.Column("precision", sa.String(50), nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("answer", sa.String(20), nullable=False),
        sa.Column("batch_size", sa.Integer),
        sa.Column("throughput", sa.Float),
        sa.Column("unit", sa.String(50)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_search_answers_cell", "search_answers", [*CELL, "answer"])


def downgrade() -> None:
    op.drop_index("ix_search_answers_cell", "search_answers")
    op.drop_table("search_answers")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("role")
