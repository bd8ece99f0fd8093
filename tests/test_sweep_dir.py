"""A sweep's directory is never shared: sweeps started together keep their own results, a
live sweep's directory is refused to another, and a dead sweep's lock is taken over.

The workload is the Graphcore app stand-in (tests/stand_ins/graphcore_app): its figures are
exact (200 img/s per sample of batch after the dropped first value), so a job that read
another sweep's log would show it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from sweeper.sweep.directory import LOCK_FILE, SweepDirInUse, SweepLock, claim_new_dir
from tests.conftest import read_csv_rows, run_sweeper, start_sweeper

SINGLE = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def exact_rows(sweep: Path) -> dict[int, tuple[str, float, int]]:
    return {
        int(r["batch_size"]): (r["status"], float(r["throughput"]), int(r["throughput_n"]))
        for r in read_csv_rows(sweep / "results.csv")
    }


def test_claim_new_dir_adds_a_suffix_when_taken(tmp_path) -> None:
    base = tmp_path / "sweeps" / "2026-01-01_00-00-00"
    got = [claim_new_dir(base) for _ in range(3)]
    assert [p.name for p in got] == [base.name, f"{base.name}-2", f"{base.name}-3"]


def test_sweeps_started_together_keep_their_own_jobs(tmp_path, standin_env) -> None:
    env = {**standin_env, "STANDIN_STEP_S": "0.1"}
    batches = {"a": (1, 2), "b": (4, 8), "c": (16, 32)}
    procs = [
        start_sweeper(
            "-m",
            *SINGLE,
            f"batch_size={','.join(map(str, sizes))}",
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for sizes in batches.values()
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    sweeps = sorted((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 3
    found = sorted(tuple(sorted(exact_rows(s))) for s in sweeps)
    assert found == sorted(batches.values())
    for sweep in sweeps:
        for batch, (status, throughput, n) in exact_rows(sweep).items():
            assert (status, n) == ("ok", 9)  # the recipe's --repeat 10, the first dropped
            assert throughput == 200.0 * batch
        assert not (sweep / LOCK_FILE).exists()  # released at the end
    # All three stored their runs in the one history they share (SQLite: each waited for
    # the others' writes instead of failing with "database is locked").
    with sqlite3.connect(tmp_path / "outputs" / "history.db") as conn:
        stored = sorted(b for (b,) in conn.execute("SELECT batch_size FROM runs"))
    assert stored == sorted(b for sizes in batches.values() for b in sizes)


def test_a_live_sweeps_directory_is_refused_to_another(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    slow = {**standin_env, "STANDIN_STEP_S": "0.3"}
    first = start_sweeper(
        "-m",
        *SINGLE,
        "batch_size=1,2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=slow,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: (sweep / LOCK_FILE).exists() and (sweep / "0").exists())
    second = run_sweeper(
        "-m", *SINGLE, "batch_size=4", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=standin_env
    )
    assert second.returncode == 2
    assert "in use by a running sweep" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert exact_rows(sweep) == {1: ("ok", 200.0, 9), 2: ("ok", 400.0, 9)}
    assert not (sweep / "2").exists()


@pytest.mark.alone  # a sweep killed on purpose
def test_resume_takes_over_the_lock_of_a_killed_sweep(tmp_path, standin_env) -> None:
    slow = {**standin_env, "STANDIN_STEP_S": "0.3"}
    args = ["-m", *SINGLE, "batch_size=1,2,4"]
    proc = start_sweeper(*args, cwd=tmp_path, env=slow, stderr=subprocess.DEVNULL)
    root = tmp_path / "outputs" / "sweeps"
    wait_for(lambda: root.exists() and any(root.glob("*/0/result.json")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (sweep,) = root.iterdir()
    owner = json.loads((sweep / LOCK_FILE).read_text())
    assert owner["pid"] == proc.pid  # left behind, stale

    resumed = run_sweeper(*args, "resume=true", cwd=tmp_path, env=standin_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming the sweep in {sweep.relative_to(tmp_path)}" in resumed.stderr
    assert f"no longer running (pid {proc.pid}" in resumed.stderr
    assert exact_rows(sweep) == {b: ("ok", 200.0 * b, 9) for b in (1, 2, 4)}
    assert list(root.iterdir()) == [sweep]


def test_lock_names_its_owner_and_refuses_a_second_holder(tmp_path) -> None:
    first = SweepLock(tmp_path)
    first.acquire()
    owner = json.loads((tmp_path / LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"]
    try:
        SweepLock(tmp_path).acquire()
    except SweepDirInUse as exc:
        assert f"pid {os.getpid()}" in str(exc)
    else:
        raise AssertionError("a second lock on a held directory was granted")
    first.release()
    second = SweepLock(tmp_path)
    second.acquire()
    assert second.took_over is None  # released cleanly: nothing stale
    second.release()
