"""The history database: opened from a URL, brought to the code's schema by the migrations
(Alembic) under a lock, written in short transactions that never lose a row to a
concurrent writer.

SQLite (one host): WAL, a busy timeout and BEGIN IMMEDIATE, so that two sweeps ingesting at
once wait for each other instead of failing with "database is locked"; on a network
filesystem, where WAL cannot work, a rollback journal and a warning. PostgreSQL: a team's
server; migrations hold an advisory lock."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from sweeper.errors import first_line
from sweeper.history import tables
from sweeper.history.url import mask, parse

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 10  # a server that does not answer: the sweep warns and goes on
# Filesystems where SQLite's WAL cannot work (its shared memory needs one host).
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "fuse.sshfs"}
_MIGRATION_LOCK = 7_271_900  # PostgreSQL advisory lock id of the history's migrations
# The schema revision this code writes: the migrations' head (tests/test_history.py checks
# that Alembic finds the same). A database at it is opened without Alembic, whose import
# and reading of the migration scripts cost about 0.25 s (most of opening the history).
SCHEMA_REVISION = "0002"
_CHUNK = 500


class HistoryError(RuntimeError):
    """The history cannot be used; the message says why and what to do."""


class Store:
    def __init__(self, url: str, create: bool = True) -> None:
        self.url = mask(url)
        parsed = parse(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            path = parsed.database
            if path and path != ":memory:":
                if not create and not Path(path).exists():
                    raise HistoryError(
                        f"no history at {self.url} yet: run a sweep, or "
                        "`python -m sweeper.collect history ingest DIR...`"
                    )
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(parsed, path)
        else:
            try:
                self.engine = create_engine(
                    parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
                )
            except (ImportError, SQLAlchemyError) as exc:
                raise HistoryError(f"cannot use {self.url}: {first_line(exc)}") from None
        try:
            self._migrate()
        except OperationalError as exc:
            raise HistoryError(f"cannot reach {self.url}: {first_line(exc.orig)}") from None
        except SQLAlchemyError as exc:  # e.g. no right to create the tables
            why = first_line(getattr(exc, "orig", None) or exc)
            raise HistoryError(f"cannot use {self.url}: {why}") from None

    # -- schema --------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Brings the database to the code's schema; refuses one newer than the code."""
        if self._at_schema_revision():
            return
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()
        known = {rev.revision for rev in script.walk_revisions()}
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            if current is not None and current not in known:
                raise HistoryError(
                    f"the history at {self.url} has schema revision {current}, newer than "
                    f"this sweeper's ({head}): upgrade sweeper, or give another database "
                    "with --db / history.url"
                )
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def _at_schema_revision(self) -> bool:
        """Whether the database is at SCHEMA_REVISION, read without Alembic (its version
        table). A migration commits its revision with its changes: a revision read is one
        in place. A database that cannot be reached raises, as before."""
        with self.engine.connect() as conn:
            try:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            except SQLAlchemyError:  # no version table: a new database, which Alembic creates
                return False
        return [tuple(row) for row in found] == [(SCHEMA_REVISION,)]

    # -- writing -------------------------------------------------------------------------
    def add_runs(self, runs: Sequence[dict[str, Any]], metrics: Sequence[dict[str, Any]]) -> int:
        """Stores runs and their metrics; a run already stored (same key) is left as it is.
        The number of runs that were new."""
        added = 0
        by_run: dict[str, list[dict[str, Any]]] = {}
        for row in metrics:
            by_run.setdefault(row["run_key"], []).append(row)
        with self.engine.begin() as conn:
            for start in range(0, len(runs), _CHUNK):
                chunk = runs[start : start + _CHUNK]
                # The rows it returns are the runs it inserted: not those already there.
                stmt = self._insert(tables.runs, ["key"]).returning(tables.runs.c.key)
                fresh = set(conn.execute(stmt, list(chunk)).scalars())
                added += len(fresh)
                rows = [m for key in fresh for m in by_run.get(key, [])]
                if rows:
                    conn.execute(self._insert(tables.metrics, ["run_key", "metric"]), rows)
        return added

    def add_search_answers(self, rows: Sequence[dict[str, Any]]) -> int:
        """Stores batch-size search answers; one already stored (same key) is left as is."""
        with self.engine.begin() as conn:
            stmt = self._insert(tables.search_answers, ["key"]).returning(
                tables.search_answers.c.key
            )
            return len(list(conn.execute(stmt, list(rows)).scalars()))

    def _insert(self, table: Any, keys: list[str]) -> Any:
        """INSERT that skips a row another writer stored in the meantime."""
        # The dialect's own module, imported when first needed: a sweep's report worker
        # imports this module while the jobs run, and PostgreSQL's takes 20 ms of a core.
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)

    def ack(self, finding: str, note: str | None, when: datetime) -> bool:
        with self.engine.begin() as conn:
            stmt = self._insert(tables.acks, ["finding"]).values(
                finding=finding, acked_at=when, note=note
            )
            return bool(conn.execute(stmt).rowcount)

    # -- reading -------------------------------------------------------------------------
    def runs_frame(self, since: datetime | None = None) -> pd.DataFrame:
        """Every run (since a time), one row per run and metric; a run without metrics
        (failed, out of memory) has one row with metric None."""
        r, m = tables.runs, tables.metrics
        stmt = select(
            r,
            m.c.metric,
            m.c.mean,
            m.c.ci95_low,
            m.c.ci95_high,
            m.c.std,
            m.c.n,
            m.c.unit,
        ).select_from(r.outerjoin(m, m.c.run_key == r.c.key))
        if since is not None:
            stmt = stmt.where(r.c.started_at >= since)
        return self._frame(stmt.order_by(r.c.started_at, r.c.key))

    def search_answers_frame(self) -> pd.DataFrame:
        """Every stored answer of a batch-size search, oldest first."""
        a = tables.search_answers
        return self._frame(select(a).order_by(a.c.started_at, a.c.key))

    def _frame(self, stmt: Any) -> pd.DataFrame:
        """A query's rows, with started_at as UTC times."""
        with self.connect() as conn:
            result = conn.execute(stmt)
            frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        if not frame.empty:
            frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
        return frame

    def acked(self) -> set[str]:
        with self.connect() as conn:
            return set(conn.execute(select(tables.acks.c.finding)).scalars())

    def count_runs(self) -> int:
        with self.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tables.runs)).scalar_one())

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: Any, path: str | None) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    journal = "WAL"
    if path and path != ":memory:" and _filesystem(Path(path).parent) in NETWORK_FILESYSTEMS:
        journal = "DELETE"
        print(
            f"warning: the history {path} is on a network filesystem, where SQLite's WAL "
            "does not work: using a rollback journal (slower; a team should use PostgreSQL: "
            "history.url=postgresql+psycopg://...)",
            file=sys.stderr,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling off: BEGIN IMMEDIATE below takes the write
        # lock at the start of a transaction, so a writer waits (busy timeout) instead of
        # failing when it later finds another writer holding it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA journal_mode={journal}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _filesystem(directory: Path) -> str | None:
    """The filesystem type the directory lives on (the longest mount point above it)."""
    try:
        target = directory.resolve()
        best, kind = "", None
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 3 or len(fields[1]) <= len(best):
                continue
            mount = fields[1]
            if str(target) == mount or str(target).startswith(mount.rstrip("/") + "/"):
                best, kind = mount, fields[2]
        return kind
    except OSError:
        return None
