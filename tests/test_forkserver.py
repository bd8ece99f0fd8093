"""The fork server's clean-state guarantee: a job forked from it sees the process state a
fresh interpreter has, whatever an earlier job did; and it stays under the sweep's
control (time limits, dying with the sweep)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweeper.parse.formats import workload_patterns
from sweeper.process import forkserver
from sweeper.process.runner import run_command, terminate
from tests.conftest import REPO

pytest.importorskip("torch")

PROBE = "tests.state_probe"
# Fields that must differ between processes (reseeded from the OS), compared separately.
RANDOM_FIELDS = ("random", "numpy_random", "torch_rng", "torch_initial_seed")


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def server(env: dict[str, str]):  # type: ignore[no-untyped-def]
    srv = forkserver.ForkServer(
        env, str(REPO), forkserver.ForkServer.command(("torch", "numpy", PROBE))
    )
    yield srv
    srv.close()


def fresh_state(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", PROBE, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,  # as the runner starts a job
    ).stdout
    return dict(json.loads(out.splitlines()[0]))


def forked_state(server: forkserver.ForkServer, tmp: Path, *args: str) -> dict[str, object]:
    out, err = tmp / f"out-{time.monotonic_ns()}.log", tmp / "err.log"
    proc = server.spawn(PROBE, list(args), out, err, None)
    assert proc.wait(timeout=60) == 0, err.read_text()
    return dict(json.loads(out.read_text().splitlines()[0]))


def without_random(state: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in state.items() if k not in RANDOM_FIELDS}


def test_a_forked_job_starts_as_a_fresh_interpreter_would(server, env, tmp_path) -> None:
    fresh = fresh_state(env, "--x", "1")
    forked = forked_state(server, tmp_path, "--x", "1")
    assert without_random(forked) == without_random(fresh)
    assert forked["cuda_initialized"] is False and forked["stdin_is_devnull"] is True


def test_a_job_in_its_own_directory_starts_as_a_fresh_interpreter_there(env, tmp_path) -> None:
    """One server serves every job of a sweep, each in its own job directory: the forked
    job's working directory and sys.path[0] (what `python -m` puts first) are those of a
    fresh interpreter started in that directory, not the server's."""
    env = {**env, "PYTHONPATH": str(REPO)}
    srv = forkserver.ForkServer(env, str(REPO), forkserver.ForkServer.command((PROBE,)))
    try:
        job_dir = tmp_path / "job"
        job_dir.mkdir()
        out, err = tmp_path / "out.log", tmp_path / "err.log"
        proc = srv.spawn(PROBE, [], out, err, str(job_dir))
        assert proc.wait(timeout=60) == 0, err.read_text()
        forked = json.loads(out.read_text().splitlines()[0])
    finally:
        srv.close()
    fresh = json.loads(
        subprocess.run(
            [sys.executable, "-m", PROBE], cwd=job_dir, env=env, capture_output=True,
            text=True, check=True,
        ).stdout.splitlines()[0]
    )  # fmt: skip
    assert (
        (forked["cwd"], forked["path0"])
        == (fresh["cwd"], fresh["path0"])
        == (
            str(job_dir),
            str(job_dir),
        )
    )


def test_the_jobs_of_a_sweep_share_one_server(tmp_path) -> None:
    """Each job runs in its own directory; the server, keyed by the environment only, is
    started once for all of them (not once per job: torch's import, seconds each)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    one = forkserver.warm_server(env, str(REPO), forkserver.ForkServer.command((PROBE,)))
    try:
        assert forkserver.warm_server(env, str(tmp_path), forkserver.ForkServer.command()) is one
    finally:
        forkserver.shutdown()


def test_nothing_a_job_does_reaches_the_next_one(server, env, tmp_path) -> None:
    fresh = fresh_state(env)
    first = forked_state(server, tmp_path, "--mutate")
    second = forked_state(server, tmp_path)
    third = forked_state(server, tmp_path)
    # The first job changed threads, dtype, seeds, env, a module global, gc: none of it shows.
    assert first["argv"] == ["--mutate"]
    first["argv"] = []
    assert without_random(first) == without_random(second) == without_random(fresh)
    # RNGs a fresh interpreter seeds from the OS are not shared between forked jobs.
    for field in RANDOM_FIELDS:
        assert len({first[field], second[field], third[field]}) == 3


def test_the_server_itself_never_runs_jobs(server, tmp_path) -> None:
    forked_state(server, tmp_path, "--mutate")
    server_process = psutil.Process(server.proc.pid)
    assert server_process.num_threads() == 1  # no pool started, nothing to copy in a fork
    assert server_process.children() == []


def test_a_time_limit_kills_a_forked_job(server, tmp_path) -> None:
    proc = server.spawn(PROBE, ["--sleep", "60"], tmp_path / "o.log", tmp_path / "e.log", None)
    # The server's child, not this process's: the runner must still reach and reap it.
    assert psutil.Process(proc.pid).ppid() == server.proc.pid
    started = time.monotonic()
    terminate(proc)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 10


@pytest.mark.alone  # a server killed on purpose
def test_jobs_die_with_the_server(server, tmp_path) -> None:
    proc = server.spawn(PROBE, ["--sleep", "60"], tmp_path / "o.log", tmp_path / "e.log", None)
    child = psutil.Process(proc.pid)
    server.proc.kill()  # as when the sweep (and so the server) is SIGKILLed
    child.wait(timeout=10)
    assert not psutil.pid_exists(proc.pid) or child.status() == psutil.STATUS_ZOMBIE


def test_another_environment_gets_another_server(env) -> None:
    command = forkserver.ForkServer.command((PROBE,))
    try:
        first = forkserver.warm_server(env, str(REPO), command)
        assert forkserver.warm_server(env, str(REPO), command) is first
        other = forkserver.warm_server({**env, "OMP_NUM_THREADS": "1"}, str(REPO), command)
        assert other is not first and other.proc.pid != first.proc.pid
        assert first.proc.poll() is not None  # one server at a time
    finally:
        forkserver.shutdown()


def test_the_workload_runs_warm_through_the_runner(tmp_path) -> None:
    argv = [
        sys.executable,
        "-m",
        forkserver.WORKLOAD_MODULE,
        *("--model", "resnet50", "--mode", "infer", "--batch-size", "1", "--image-size", "64"),
        *("--intervals", "3", "--steps-per-interval", "1", "--optimize", "none"),
    ]
    try:
        outcome = run_command(argv, tmp_path / "job", workload_patterns("builtin"), warm_start=True)
        server = next(iter(forkserver._servers.values()))
        assert server.alive()
    finally:
        forkserver.shutdown()
    assert outcome.exit_code == 0, (tmp_path / "job" / "stderr.log").read_text()
    assert "fork server unavailable" not in (tmp_path / "job" / "stderr.log").read_text()
    assert len(outcome.parsed.throughput[0]) == 3
