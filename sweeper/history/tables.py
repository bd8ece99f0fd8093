"""The history's tables (SQLAlchemy Core). Changing them means a new migration in
migrations/versions/ too: the database is made by the migrations, never by create_all.

runs: one row per job run (a result.json), keyed by a hash of what makes it that run, so
that ingesting it twice stores it once. Its identity columns and `environment` (the split
keys, canonical JSON) make its series; `annotations` holds the rest of its environment.
metrics: one row per run and metric (throughput, latency_ms), with the run's own interval.
acks: findings a person acknowledged (regressions leaves them out).
search_answers: one row per batch-size search, cell and answer (peak, knee, max_fit,
latency), a series of its own (a fall of the largest batch that fits is a finding).
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
)

metadata = MetaData()

IDENTITY = ("workload", "model", "system", "mode", "data", "precision", "batch_size", "instances")


def _configuration() -> list[Column[str]]:
    """The columns naming a configuration's choices (a table of its own, each call)."""
    sizes = {"workload": 200, "model": 200, "system": 200, "mode": 50, "data": 100}
    return [
        Column(name, String(sizes.get(name, 50)), nullable=False)
        for name in ("workload", "model", "system", "mode", "data", "precision")
    ]


runs = Table(
    "runs",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    Column("sweep", Text, nullable=False),  # the sweep directory it belongs to
    Column("job_dir", Text, nullable=False),
    *_configuration(),
    Column("batch_size", Integer, nullable=False),
    Column("instances", Integer, nullable=False),
    Column("flags", Text, nullable=False),  # canonical JSON of flags.* ({} for none)
    Column("environment", Text, nullable=False),  # canonical JSON of the split keys
    Column("annotations", Text, nullable=False),  # JSON: the other environment keys
    Column("host", String(255)),
    Column("cpu_model", String(255)),
    Column("cpu_count", Integer),
    Column("accelerator", String(255)),
    Column("accelerator_driver", String(100)),
    Column("git_commit", String(64)),
    Column("status", String(30), nullable=False),
    Column("reason", Text),
    Column("unstable", Boolean, nullable=False),
    # "run", or "search-probe": a job of a batch-size search (sweeper/sweep/search/), whose
    # out-of-memory at the boundary is what the search learned, not a regression.
    Column("role", String(20), nullable=False, server_default="run"),
    Index("ix_runs_series", *IDENTITY, "environment"),
    Index("ix_runs_started_at", "started_at"),
)

metrics = Table(
    "metrics",
    metadata,
    Column("run_key", String(64), ForeignKey("runs.key", ondelete="CASCADE"), primary_key=True),
    Column("metric", String(50), primary_key=True),
    Column("mean", Float, nullable=False),
    Column("ci95_low", Float),
    Column("ci95_high", Float),
    Column("std", Float),
    Column("n", Integer),
    Column("unit", String(50)),
)

acks = Table(
    "acks",
    metadata,
    Column("finding", String(64), primary_key=True),
    Column("acked_at", DateTime(timezone=True), nullable=False),
    Column("note", Text),
)

SEARCH_CELL = ("workload", "model", "system", "mode", "data", "precision", "instances")
RUN, SEARCH_PROBE = "run", "search-probe"

search_answers = Table(
    "search_answers",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    Column("sweep", Text, nullable=False),
    *_configuration(),
    Column("instances", Integer, nullable=False),
    Column("flags", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("answer", String(20), nullable=False),  # peak, knee, max_fit, latency
    Column("batch_size", Integer),  # None: not found (e.g. max fits: nothing ran out)
    Column("throughput", Float),
    Column("unit", String(50)),
    Column("status", String(30), nullable=False),  # the search's: ok, flaky-boundary, ...
    Column("detail", Text, nullable=False),  # the answer as search.json has it (JSON)
    Index("ix_search_answers_cell", *SEARCH_CELL, "answer"),
)
