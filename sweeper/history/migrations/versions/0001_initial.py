"""The first schema: runs, metrics, acks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

IDENTITY = ("workload", "model", "system", "mode", "data", "precision", "batch_size", "instances")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sweep", sa.Text, nullable=False),
        sa.Column("job_dir", sa.Text, nullable=False),
        sa.Column("workload", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("system", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(50), nullable=False),
        sa.Column("data", sa.String(100), nullable=False),
        sa.Column("precision", sa.String(50), nullable=False),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("cpu_model", sa.String(255)),
        sa.Column("cpu_count", sa.Integer),
        sa.Column("accelerator", sa.String(255)),
        sa.Column("accelerator_driver", sa.String(100)),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("unstable", sa.Boolean, nullable=False),
    )
    op.create_index("ix_runs_series", "runs", [*IDENTITY, "environment"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "metrics",
        sa.Column(
            "run_key",
            sa.String(64),
            sa.ForeignKey("runs.key", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("metric", sa.String(50), primary_key=True),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("ci95_low", sa.Float),
        sa.Column("ci95_high", sa.Float),
        sa.Column("std", sa.Float),
        sa.Column("n", sa.Integer),
        sa.Column("unit", sa.String(50)),
    )
    op.create_table(
        "acks",
        sa.Column("finding", sa.String(64), primary_key=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("acks")
    op.drop_table("metrics")
    op.drop_index("ix_runs_started_at", "runs")
    op.drop_index("ix_runs_series", "runs")
    op.drop_table("runs")
