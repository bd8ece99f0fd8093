"""Detached sweeps: `detach=true` checks, hands the sweep to a driver of its own and returns;
the sweep finishes without the terminal; `sweeper status` and `sweeper cancel` see and stop
it (sweeper/sweep/detach.py). Run on the Graphcore stand-in (poprun's stand-in on real
OpenMPI), whose steps take STANDIN_STEP_S seconds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeper.sweep import detach
from tests.conftest import (
    driver_record,
    process_env,
    read_csv_rows,
    run_sweeper,
    start_sweeper,
    wait_for_driver_exit,
    wait_for_driver_gone,
)

STANDIN = ["system=ipu_m2000", "mode=infer", "data=synthetic"]
pytestmark = pytest.mark.slow


def gone(info: dict) -> bool:
    return detach.driver_alive(info) is False


def status(sweep: Path, cwd: Path) -> str:
    proc = run_sweeper("status", str(sweep), cwd=cwd, keep_flag_position=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_detached_sweep_returns_at_once_and_finishes_without_its_session(
    tmp_path: Path, standin_env
) -> None:
    sweep = tmp_path / "sweep"
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0.3"}
    began = time.monotonic()
    submitted = start_sweeper(
        "-m", *STANDIN, "batch_size=1,2,4", f"hydra.sweep.dir={sweep}", "detach=true",
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _out, err = submitted.communicate(timeout=60)
    assert submitted.returncode == 0, err
    assert time.monotonic() - began < 10
    assert f"sweeper status {sweep}" in err and f"sweeper cancel {sweep}" in err
    with pytest.raises(ProcessLookupError):  # the submitting session: nothing of it is left
        os.killpg(submitted.pid, signal.SIGKILL)
    info = driver_record(sweep)
    assert info["exit_status"] is None and not gone(info)
    running = status(sweep, tmp_path)
    assert running.startswith(f"sweep {sweep}: running (driver pid {info['pid']}")

    ended = wait_for_driver_exit(sweep)
    assert ended["exit_status"] == 0
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["batch_size"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok"), ("4", "ok")]
    assert (sweep / "summary.md").exists()
    final = status(sweep, tmp_path)
    assert "finished, succeeded (exit status 0" in final and "3 ended (ok 3)" in final
    # The history rows, written by the driver.
    listed = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "history", "list", "--runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    runs = [line for line in listed.stdout.splitlines() if " throughput " in line]
    assert len(runs) == 3 and all("ipu_m2000" in line for line in runs), listed.stdout
    wait_for_driver_gone(info)  # no process left behind


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_detached_sweep_outlives_its_tmux_session(tmp_path: Path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    env = process_env({**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0.3"})
    command = " ".join(
        [sys.executable, "-m", "sweeper", "-m", *STANDIN, "batch_size=1,2,4",
         f"hydra.sweep.dir={sweep}", "detach=true", "; sleep 600"]
    )  # fmt: skip
    name = f"sweeper-test-{os.getpid()}"
    # A tmux server of its own: a session of a server already running (the user's, where
    # the suite runs inside tmux) takes that server's environment, not this test's.
    tmux = ["tmux", "-L", name, "-f", "/dev/null"]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", name, "-c", str(tmp_path), command],
        env=env, check=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (sweep / "driver.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    assert wait_for_driver_exit(sweep)["exit_status"] == 0
    assert len(read_csv_rows(sweep / "results.csv")) == 3
    assert "finished, succeeded" in status(sweep, tmp_path)


def test_cancel_stops_a_detached_sweep_and_resume_finishes_it(tmp_path: Path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    # Job 0 at once; jobs 1 and 2 for 3 s each (one of them running when cancelled).
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "1:0,*:0.5"}
    args = ["-m", *STANDIN, "batch_size=1,2,4", f"hydra.sweep.dir={sweep}", "detach=true"]
    proc = run_sweeper(*args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 120
    while not (sweep / "0" / "result.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    cancelled = run_sweeper("cancel", str(sweep), cwd=tmp_path, keep_flag_position=True)
    assert cancelled.returncode == 0, cancelled.stderr
    info = driver_record(sweep)
    assert info["exit_status"] == 130 and gone(info)
    assert "stopped (cancelled or interrupted) (exit status 130" in cancelled.stdout
    rows = read_csv_rows(sweep / "results.csv")  # the report for what ran
    assert rows[0]["status"] == "ok" and {r["status"] for r in rows[1:]} <= {"cancelled"}
    # resume=true detach=true: the rest, in the same directory, in the background again.
    again = run_sweeper(*args, "resume=true", cwd=tmp_path, env={**env, "STANDIN_STEP_S": "0"})
    assert again.returncode == 0, again.stderr
    assert wait_for_driver_exit(sweep)["exit_status"] == 0
    rows = read_csv_rows(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["ok"] * 3


def test_bad_input_is_refused_before_detaching(tmp_path: Path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    blocking = run_sweeper("-m", *STANDIN, "batch_size=0", cwd=tmp_path, env=standin_env)
    detached = run_sweeper(
        "-m", *STANDIN, "batch_size=0", f"hydra.sweep.dir={sweep}", "detach=true",
        cwd=tmp_path, env=standin_env,
    )  # fmt: skip
    assert detached.returncode == blocking.returncode == 2  # refused input, as a usage error
    assert "batch_size" in detached.stderr
    assert detached.stderr.splitlines()[0] == blocking.stderr.splitlines()[0]
    assert not (sweep / "driver.json").exists()
