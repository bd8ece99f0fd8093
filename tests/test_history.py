"""The results history end to end (README: "History"): real sweeps of Graphcore's app
stand-in (tests/stand_ins/graphcore_app, given run-to-run noise and changes through
STANDIN_NOISE and STANDIN_SCALE) stored at the end of each sweep, then asked through the CLI
what changed; on SQLite and on the real PostgreSQL server that scripts/postgres-server
starts (.ci/run starts it; skipped when it is not up, outside CI)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import (
    REPO,
    read_csv_rows,
    run_sweeper,
    wait_for_driver_exit,
    wait_for_driver_gone,
)

POSTGRES_SCRIPT = REPO / "scripts" / "postgres-server"
SWEEP = ["system=ipu_m2000", "model=resnet50", "mode=infer", "data=synthetic"]
BATCH_SIZES = [1, 4, 16, 32]
# Nine sweeps: 2% noise between runs; a one-run dip at batch size 4 in sweep 3 that comes
# back; from sweep 6 on, batch sizes 16 and 32 lose 20% (the step) and 1 gains 30%.
DIP_SWEEP, STEP_SWEEP, SWEEPS = 3, 6, 9


def postgres_base_url() -> str | None:
    try:
        up = subprocess.run([POSTGRES_SCRIPT, "status"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if up.returncode != 0:
        return None
    return subprocess.run([POSTGRES_SCRIPT, "url"], capture_output=True, text=True).stdout.strip()


def _need_postgres() -> str:
    url = postgres_base_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running: scripts/postgres-server start")
        pytest.skip("no PostgreSQL server (scripts/postgres-server start)")
    return url


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database of its own on the real server; its URL (with the test role's
    test-only password)."""
    base = _need_postgres()
    name = f"history_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_db")


def history(*args: str, db: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "history", *args, "--db", db],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=300,
    )


def standin(extra: dict[str, str | None] | None = None) -> dict[str, str | None]:
    return {
        "GRAPHCORE_CNN_APP_DIR": str(REPO / "tests" / "stand_ins" / "graphcore_app"),
        "STANDIN_STEP_S": "0",
        "STANDIN_HEAL": None,
        "SWEEPER_HISTORY_URL": None,
        **(extra or {}),
    }


def scale_for(sweep: int) -> str:
    if sweep == DIP_SWEEP:
        return "4:0.6"
    if sweep >= STEP_SWEEP:
        return "16:0.8,32:0.8,1:1.3"
    return ""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The nine sweeps, each stored by the sweep itself into a SQLite history."""
    root = tmp_path_factory.mktemp("history")
    url = f"sqlite:///{root / 'history.db'}"
    sweeps = []
    for i in range(SWEEPS):
        out = root / f"sweep-{i}"
        proc = run_sweeper(
            *SWEEP,
            f"batch_size={','.join(map(str, BATCH_SIZES))}",
            f"hydra.sweep.dir={out}",
            f"history.url={url}",
            "-m",
            cwd=root,
            env=standin({"STANDIN_NOISE": f"0.02:{i}", "STANDIN_SCALE": scale_for(i)}),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"history: {len(BATCH_SIZES)} run(s) stored in {url}" in proc.stderr
        sweeps.append(out)
    return {"root": root, "url": url, "sweeps": sweeps}


def first_start(sweep: Path, batch_size: int) -> str:
    for path in sweep.glob("*/result.json"):
        result = json.loads(path.read_text())
        if result["batch_size"] == batch_size:
            return result["started_at"]
    raise AssertionError(f"no batch size {batch_size} in {sweep}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_regressions_report_exactly_the_lasting_step_once(backend, built, request) -> None:
    url = built["url"]
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_db")
        stored = history("ingest", *map(str, built["sweeps"]), db=url)
        assert stored.returncode == 0, stored.stderr
        assert f"{SWEEPS * len(BATCH_SIZES)} new run(s)" in stored.stdout
    proc = history("regressions", "--format", "json", db=url)
    assert proc.returncode == 1, proc.stderr  # a regression: CI fails
    [finding] = json.loads(proc.stdout)
    assert finding["kind"] == "regression" and finding["metric"] == "throughput"
    assert finding["batch_sizes"] == [16, 32]
    assert -25 < finding["change_pct"] < -15
    assert finding["before"] > finding["after"]
    assert finding["since_sweep"] == str(built["sweeps"][STEP_SWEEP])
    step_began = min(first_start(built["sweeps"][STEP_SWEEP], b) for b in (16, 32))
    assert finding["since"][:19] == step_began[:19]
    assert finding["p_value"] < 0.01
    assert (finding["model"], finding["system"]) == ("resnet50", "ipu_m2000")
    # Latency moved with throughput (the stand-in's latency follows from it): judged when
    # asked for, as its own finding.
    latency = json.loads(history("regressions", "--metric", "latency_ms", "--format", "json",
                                 db=url).stdout)  # fmt: skip
    assert [(f["metric"], f["batch_sizes"]) for f in latency] == [("latency_ms", [16, 32])]

    both = json.loads(history("regressions", "--improvements", "--format", "json", db=url).stdout)
    assert sorted((f["kind"], tuple(f["batch_sizes"])) for f in both) == [
        ("improvement", (1,)),
        ("regression", (16, 32)),
    ]
    [better] = [f for f in both if f["kind"] == "improvement"]
    assert 25 < better["change_pct"] < 35

    # Acknowledged: no longer fails CI; still listed with --all.
    acked = history("ack", finding["id"], "--note", "expected: new SDK", db=url)
    assert acked.returncode == 0, acked.stderr
    assert history("regressions", db=url).returncode == 0
    listed = history("regressions", "--all", "--format", "md", db=url)
    assert listed.returncode == 0 and "regression (acked)" in listed.stdout


def test_ingest_is_idempotent_and_list_and_trend_answer(built, tmp_path) -> None:
    url = built["url"]
    again = history("ingest", *map(str, built["sweeps"]), db=url)
    assert again.returncode == 0, again.stderr
    assert f"{SWEEPS * len(BATCH_SIZES)} result(s) read, 0 new run(s)" in again.stdout
    with sqlite3.connect(make_url(url).database) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (SWEEPS * 4,)
        # Throughput, latency and the efficiency (the stand-in's IPU has a declared peak).
        assert conn.execute("SELECT count(*) FROM metrics").fetchone() == (SWEEPS * 4 * 3,)
    listed = history("list", "batch_size=16", db=url)
    assert listed.returncode == 0
    lines = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert {line[8] for line in lines} == {"latency_ms", "throughput", "efficiency"}
    assert all(line[9] == str(SWEEPS) for line in lines)  # runs per series
    png = tmp_path / "trend.png"
    trend = history("trend", "model=resnet50", "batch_size=16", "--out", str(png), db=url)
    assert trend.returncode == 0, trend.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len([line for line in trend.stdout.splitlines() if " ok " in line]) == SWEEPS
    bad = history("list", "colour=red", db=url)
    assert bad.returncode == 2 and "a filter is key=value with key one of" in bad.stderr
    bad = history("regressions", "--since", "last tuesday", db=url)
    assert bad.returncode == 2 and "give a period such as 30d" in bad.stderr


def test_a_status_flip_is_a_regression(tmp_path) -> None:
    db_url = f"sqlite:///{tmp_path / 'history.db'}"
    for i, oom_above in enumerate([None, None, "8"]):
        proc = run_sweeper(
            *SWEEP,
            "batch_size=8,16",
            f"hydra.sweep.dir={tmp_path / f's{i}'}",
            f"history.url={db_url}",
            "-m",
            cwd=tmp_path,
            env=standin({"STANDIN_OOM_ABOVE": oom_above}),
        )
        assert proc.returncode == (1 if oom_above else 0), proc.stderr[-2000:]
    proc = history("regressions", "--format", "json", db=db_url)
    [flip] = json.loads(proc.stdout)
    assert (flip["metric"], flip["before"], flip["after"]) == ("status", "ok", "oom")
    assert flip["batch_sizes"] == [16] and "out of memory" in flip["evidence"].lower()


def test_two_ingests_at_once_lose_nothing(db_url, tmp_path) -> None:
    """Two processes store 1,500 results each into one database at the same time: every
    run is there, and neither failed (SQLite: "database is locked")."""
    proc = run_sweeper(
        *SWEEP, "batch_size=4", f"hydra.sweep.dir={tmp_path / 'real'}", "history.enabled=false",
        "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    template = json.loads((tmp_path / "real" / "0" / "result.json").read_text())
    for half in ("a", "b"):
        for i in range(1500):
            job = tmp_path / half / str(i)
            job.mkdir(parents=True)
            result = {**template, "job_dir": str(job), "batch_size": i % 50 + 1}
            (job / "result.json").write_text(json.dumps(result))
    argv = [sys.executable, "-m", "sweeper.collect", "history", "ingest", "--db", db_url]
    procs = [
        subprocess.Popen([*argv, str(tmp_path / half)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for half in ("a", "b")
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "1500 new run(s)" in out
    listed = history("list", "--runs", db=db_url)
    # A line per run and metric: throughput, latency, efficiency.
    assert len(listed.stdout.splitlines()) - 1 == 3000 * 3


def test_a_password_in_the_url_is_in_no_file(tmp_path, postgres_db) -> None:
    """The URL with its password on the command line: the sweep stores its runs in the
    real server, and the password is in no file the sweep wrote, nor in its output. A
    database of its own: the server outlives test runs, and a later run's temporary
    directory may have an earlier run's name (its rows were counted too)."""
    base = postgres_db
    password = make_url(base).password
    assert password
    proc = run_sweeper(
        *SWEEP, "batch_size=2,4", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"history.url={base}",
        "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "history: 2 run(s) stored in postgresql+psycopg://sweeper@127.0.0.1:" in proc.stderr
    engine = create_engine(base)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
    engine.dispose()
    assert stored == 2
    assert_nowhere(password, tmp_path, proc)


def test_a_detached_sweep_stores_its_runs_with_the_password_from_the_command_line(
    tmp_path,
) -> None:
    """detach=true: the driver gets the password taken off the command line in its
    environment only; it stores the runs, and the password is in no file (driver.json and
    driver.log included)."""
    base = _need_postgres()
    password = make_url(base).password
    assert password
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        *SWEEP, "batch_size=2,4", f"hydra.sweep.dir={sweep}", f"history.url={base}",
        "detach=true", "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = wait_for_driver_exit(sweep, timeout=120)
    log = (sweep / "driver.log").read_text()
    assert "history: 2 run(s) stored in postgresql+psycopg://sweeper@127.0.0.1:" in log, log
    assert_nowhere(password, tmp_path, proc)
    wait_for_driver_gone(info)


def test_an_unreachable_database_costs_the_sweep_nothing(tmp_path) -> None:
    password = "s3cret-" + uuid.uuid4().hex[:8]
    url = f"postgresql+psycopg://bench:{password}@127.0.0.1:1/history"
    proc = run_sweeper(
        *SWEEP, "batch_size=2,4", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"history.url={url}",
        "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: the results were not stored in the history" in proc.stderr
    assert "history ingest" in proc.stderr  # how to store them later
    assert [r["status"] for r in read_csv_rows(tmp_path / "sweep" / "results.csv")] == ["ok"] * 2
    assert_nowhere(password, tmp_path, proc)


def assert_nowhere(secret: str, root: Path, proc: subprocess.CompletedProcess[str]) -> None:
    assert secret not in proc.stdout and secret not in proc.stderr
    written = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "multirun.yaml" for p in written)
    assert any(p.parent.name == ".hydra" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_a_password_in_a_config_file_is_refused_before_any_job(tmp_path) -> None:
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "team.yaml").write_text(
        "# @package _global_\nhistory:\n  url: postgresql+psycopg://bench:pw123@db.example/h\n"
    )
    proc = run_sweeper(
        "--config-dir", str(tmp_path / "conf"), "sweep=team", *SWEEP, "batch_size=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "history.url (postgresql+psycopg://bench:***@db.example/h) holds a password" in (
        proc.stderr
    )
    assert "PGPASSWORD or ~/.pgpass" in proc.stderr
    assert not (tmp_path / "sweep" / "0").exists()


def test_history_off_writes_no_database(tmp_path) -> None:
    proc = run_sweeper(
        *SWEEP, "batch_size=2", "history.enabled=false", f"hydra.sweep.dir={tmp_path / 's'}",
        "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "history:" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_plain_run_is_stored_and_results_carry_their_environment(tmp_path) -> None:
    proc = run_sweeper(*SWEEP, "batch_size=2", cwd=tmp_path, env=standin())
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "outputs" / "history.db"  # the default URL, relative to where it ran
    with sqlite3.connect(db) as conn:
        [(status, commit, cpu)] = conn.execute("SELECT status, git_commit, cpu_model FROM runs")
    assert status == "ok"
    [result] = (tmp_path / "outputs" / "runs").glob("*/result.json")
    environment = json.loads(result.read_text())["environment"]
    assert environment["cpu_count"] == os.cpu_count()
    assert environment["cpu_model"] == cpu and cpu  # /proc/cpuinfo's model name
    # The program (the stand-in's validation.py) lives in this repository's checkout.
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert commit == environment["git_commit"] and commit.startswith(head)


def test_a_database_newer_than_the_code_is_refused_clearly(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    assert history("list", db=url).returncode == 2  # none yet: says so
    run = run_sweeper(
        *SWEEP, "batch_size=2", f"history.url={url}", f"hydra.sweep.dir={tmp_path / 's'}",
        "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with sqlite3.connect(tmp_path / "h.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    proc = history("list", db=url)
    assert proc.returncode == 2
    assert "has schema revision 9999, newer than this sweeper's (0002): upgrade sweeper" in (
        proc.stderr
    )
    # A sweep with it still stands, and says how to store its results later.
    run = run_sweeper(
        *SWEEP, "batch_size=2", f"history.url={url}", f"hydra.sweep.dir={tmp_path / 's2'}",
        "-m", cwd=tmp_path, env=standin(),
    )  # fmt: skip
    assert run.returncode == 0 and "newer than this sweeper's" in run.stderr


def test_a_database_at_the_code_s_schema_opens_without_alembic_and_an_older_one_upgrades(
    db_url: str,
) -> None:
    """Store reads the version table itself where the database is at SCHEMA_REVISION (the
    migrations' head, as Alembic finds it), and imports Alembic only to migrate: a fresh
    interpreter opens such a database without it. A database one revision behind is still
    brought to the head by Alembic, its rows kept (SQLite and PostgreSQL)."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from sweeper.history import store

    config = Config()
    config.set_main_option("script_location", str(store.MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_current_head() == store.SCHEMA_REVISION
    behind = script.get_revision(store.SCHEMA_REVISION).down_revision
    assert isinstance(behind, str)

    store.Store(db_url).close()  # created, at the head
    opened = subprocess.run(
        [sys.executable, "-c",
         "import sys; from sweeper.history.store import Store; Store(sys.argv[1]).close(); "
         "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))", db_url],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "[]"

    engine = create_engine(db_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, behind)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(behind,)]
    store.Store(db_url).close()  # Alembic brings it to the head
    with engine.connect() as conn:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert found == [(store.SCHEMA_REVISION,)]
