"""The results history's figures, each against a plain baseline measured in the same run:
ingesting 10,000 results against reading the same result.json files; `regressions` over
100,000 stored runs against a bare SELECT of the same rows; two ingests at once against one
ingest of the same results. SQLite here; PostgreSQL too when scripts/postgres-server runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
Row = tuple[str, str, str, str]
TEMPLATE = {
    "workload": "builtin",
    "model": "resnet50",
    "system": "cpu",
    "mode": "infer",
    "data": "synthetic",
    "precision": "fp32",
    "instances": 1,
    "status": "ok",
    "reason": None,
    "throughput": {"mean": 100.0, "ci95_low": 99.0, "ci95_high": 101.0, "std": 1.0, "n": 10},
    "latency_ms": {"mean": 10.0, "ci95_low": 9.9, "ci95_high": 10.1, "std": 0.1, "n": 10},
    "unstable": False,
    "host": "bench",
    "fingerprint": "f",
    "versions": {"sweeper": "0.1.0"},
    "environment": {"host": "bench", "cpu_model": "cpu", "cpu_count": 2},
    "attempt": 1,
    "repeat": 0,
}


def _write_results(root: Path, count: int, prefix: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(count):
        job = root / prefix / str(i)
        job.mkdir(parents=True)
        when = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S%z")
        result = {**TEMPLATE, "batch_size": i % 64 + 1, "job_dir": str(job), "started_at": when}
        (job / "result.json").write_text(json.dumps(result))


def _ingest_seconds(url: str, *directories: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "history", "ingest", "--db", url,
         *map(str, directories)],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    return time.perf_counter() - start


def _postgres_url() -> str | None:
    script = REPO / "scripts" / "postgres-server"
    if subprocess.run([script, "status"], capture_output=True).returncode != 0:
        return None
    return subprocess.run([script, "url"], capture_output=True, text=True).stdout.strip()


def _fresh_postgres(base: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False), name


def _drop_postgres(base: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


@contextmanager
def fresh_databases(tmp: Path) -> Iterator[list[tuple[str, str]]]:
    """(backend, URL) of an empty database per backend; PostgreSQL's dropped afterwards."""
    found = [("sqlite", f"sqlite:///{tmp / f'h-{uuid.uuid4().hex[:6]}.db'}")]
    base = _postgres_url()
    created = []
    if base is not None:
        url, name = _fresh_postgres(base)
        found.append(("postgresql", url))
        created.append(name)
    try:
        yield found
    finally:
        for name in created:
            _drop_postgres(str(base), name)


def bench_ingest(count: int = 10_000) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _write_results(tmp, count, "results")
        start = time.perf_counter()
        for path in (tmp / "results").rglob("result.json"):
            json.loads(path.read_text())
        plain = time.perf_counter() - start
        with fresh_databases(tmp) as databases:
            measured = [
                (
                    backend,
                    _ingest_seconds(url, tmp / "results"),
                    _ingest_seconds(url, tmp / "results"),
                )
                for backend, url in databases
            ]  # the second: nothing new to store
        for backend, seconds, again in measured:
            rows.append(
                (
                    f"ingest {count:,} results ({backend})",
                    f"{seconds:.1f} s ({count / seconds:,.0f}/s); again {again:.1f} s",
                    f"{seconds / plain:.1f}x reading the files ({plain:.2f} s)",
                    "< 10 s for 10,000",
                )
            )
    return rows


def bench_regressions(series: int = 1000, runs_per_series: int = 100) -> list[Row]:
    from sqlalchemy import select

    from sweeper.history import tables
    from sweeper.history.detect import findings
    from sweeper.history.ingest import canonical
    from sweeper.history.settings import HistorySettings
    from sweeper.history.store import Store

    rng = random.Random(0)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    runs, metrics = [], []
    for s in range(series):
        model, batch = f"model{s // 20}", s % 20 + 1
        step = 0.8 if s % 50 == 0 else 1.0  # one series in 50 has a lasting step
        for r in range(runs_per_series):
            key = f"{s}-{r}"
            value = 1000.0 * (step if r >= runs_per_series - 10 else 1.0) * (1 + rng.gauss(0, 0.01))
            runs.append(
                {
                    "key": key, "started_at": start + timedelta(hours=r, seconds=s),
                    "ingested_at": start, "sweep": f"sweeps/{r}", "job_dir": f"sweeps/{r}/{s}",
                    "workload": "builtin", "model": model, "system": "cpu", "mode": "infer",
                    "data": "synthetic", "precision": "fp32", "batch_size": batch,
                    "instances": 1, "flags": "{}", "environment": canonical({"cpu_model": "x"}),
                    "annotations": "{}", "host": "bench", "cpu_model": "x", "cpu_count": 2,
                    "accelerator": None, "accelerator_driver": None, "git_commit": None,
                    "status": "ok", "reason": None, "unstable": False,
                }
            )  # fmt: skip
            metrics.append(
                {"run_key": key, "metric": "throughput", "mean": value,
                 "ci95_low": value * 0.99, "ci95_high": value * 1.01, "std": 5.0, "n": 10,
                 "unit": None}
            )  # fmt: skip
    rows: list[Row] = []
    total = series * runs_per_series
    with tempfile.TemporaryDirectory() as tmp_name, fresh_databases(Path(tmp_name)) as databases:
        for backend, url in databases:
            store = Store(url)
            store.add_runs(runs, metrics)
            r, m = tables.runs, tables.metrics
            begin = time.perf_counter()
            with store.connect() as conn:
                conn.execute(select(r, m).select_from(r.join(m, m.c.run_key == r.c.key))).all()
            bare = time.perf_counter() - begin
            begin = time.perf_counter()
            found = findings(store.runs_frame(), HistorySettings())
            seconds = time.perf_counter() - begin
            store.close()
            stepped = series // 50
            rows.append(
                (
                    f"regressions over {total:,} runs ({backend})",
                    f"{seconds:.1f} s; {len(found)} finding(s) for {stepped} stepped configs",
                    f"{seconds / bare:.1f}x a bare SELECT of the rows ({bare:.2f} s)",
                    "< 30 s; every step found, nothing else",
                )
            )
    return rows


def bench_concurrent(count: int = 5000) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _write_results(tmp, count, "a")
        _write_results(tmp, count, "b")
        with fresh_databases(tmp) as first, fresh_databases(tmp) as second:
            pairs = [(b, u, fresh) for (b, u), (_, fresh) in zip(first, second, strict=True)]
            for backend, url, fresh in pairs:
                rows.append(_concurrent_row(tmp, count, backend, url, fresh))
    return rows


def _concurrent_row(tmp: Path, count: int, backend: str, url: str, fresh: str) -> Row:
    """Both halves by one ingest into `url`; then each half by its own process at once
    into `fresh`."""
    one = _ingest_seconds(url, tmp / "a", tmp / "b")
    argv = [sys.executable, "-m", "sweeper.collect", "history", "ingest", "--db", fresh]
    begin = time.perf_counter()
    procs = [
        subprocess.Popen([*argv, str(tmp / half)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
        for half in ("a", "b")
    ]  # fmt: skip
    outs = [p.communicate() for p in procs]
    both = time.perf_counter() - begin
    ok = all(p.returncode == 0 for p in procs) and all(
        f"{count} new run(s)" in out for out, _ in outs
    )
    return (
        f"two ingests of {count:,} at once ({backend})",
        f"{both:.1f} s; {'nothing lost' if ok else 'FAILED: ' + outs[0][1][-80:]}",
        f"{both / one:.2f}x one ingest of both ({one:.1f} s)",
        "<= 1.5x, nothing lost, no 'database is locked'",
    )


def bench_history() -> list[Row]:
    return bench_ingest() + bench_regressions() + bench_concurrent()
