"""Fault injection: every way a job goes wrong is recorded right, the rest of the sweep runs,
nothing written is lost, and resume=true reruns exactly the jobs that did not succeed.

The workload is the Graphcore app stand-in (tests/stand_ins/graphcore_app), whose faults are
chosen by batch size; under poprun it runs through the poprun stand-in on real OpenMPI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import launched, read_csv_rows, run_sweeper, start_sweeper

SINGLE = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]
needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs OpenMPI's mpirun")


def stand_ins_alive(run_log: Path) -> list[int]:
    """Processes of the Graphcore stand-in that this test started and that still run."""
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "validation.py" in " ".join(proc.info["cmdline"] or []) and (
                proc.environ().get("STANDIN_RUN_LOG") == str(run_log)
            ):
                alive.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return alive


def statuses(sweep: Path) -> dict[str, tuple[str, str]]:
    return {
        r["batch_size"]: (r["status"], r["reason"]) for r in read_csv_rows(sweep / "results.csv")
    }


def test_every_fault_is_recorded_and_resume_reruns_only_those(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *SINGLE, "batch_size=1,3,5,6,7,9,2", "timeout_s=4", f"hydra.sweep.dir={sweep}"]
    proc = run_sweeper(*args, cwd=tmp_path, env=standin_env)
    assert proc.returncode == 1, proc.stderr  # some jobs did not succeed
    got = statuses(sweep)
    assert got["1"] == ("ok", "") and got["2"] == ("ok", "")
    assert got["3"][0] == "failed" and "exit code 3" in got["3"][1]
    assert "stand-in crash" in got["3"][1]  # the tail of stderr
    assert got["5"][0] == "timeout" and "4 s" in got["5"][1]
    assert got["6"][0] == "no-metrics"
    assert got["7"][0] == "invalid" and "nan" in got["7"][1]
    assert got["9"][0] == "failed" and "SIGKILL" in got["9"][1]
    # Killed from outside: said so, and not out of memory (the kernel's OOM count did not rise).
    assert "killed by SIGKILL from outside the sweeper (not its time limit" in got["9"][1]
    assert "5 of 7 job(s) did not succeed" in proc.stderr
    ok_result = json.loads((sweep / "0" / "result.json").read_text())
    assert ok_result["throughput"]["mean"] == pytest.approx(200.0, rel=0.01)
    assert ok_result["throughput"]["dropped"] == 1
    # The hung job's whole process tree is gone.
    assert stand_ins_alive(tmp_path / "runs.log") == []

    before = len(launched(tmp_path / "runs.log"))
    first_ok = (sweep / "0" / "result.json").read_bytes()
    healed = {**standin_env, "STANDIN_HEAL": "1"}
    proc = run_sweeper(*args, "resume=true", cwd=tmp_path, env=healed)
    assert proc.returncode == 0, proc.stderr
    rerun = [
        int(r["argv"][r["argv"].index("--batch-size") + 1])
        for r in launched(tmp_path / "runs.log")[before:]
    ]
    assert sorted(rerun) == [3, 5, 6, 7, 9]
    rows = read_csv_rows(sweep / "results.csv")
    assert len(rows) == 7 and {r["status"] for r in rows} == {"ok"}
    assert (sweep / "0" / "result.json").read_bytes() == first_ok
    # The failed attempt is kept beside the new one, not overwritten.
    earlier = json.loads((sweep / "1" / "attempts" / "1" / "result.json").read_text())
    assert earlier["status"] == "failed"


def test_resume_finds_the_earlier_sweep_of_the_same_command(tmp_path, standin_env) -> None:
    args = ["-m", *SINGLE, "batch_size=1,3"]
    assert run_sweeper(*args, cwd=tmp_path, env=standin_env).returncode == 1
    healed = {**standin_env, "STANDIN_HEAL": "1"}
    proc = run_sweeper(*args, "resume=true", cwd=tmp_path, env=healed)
    assert proc.returncode == 0, proc.stderr
    assert "resuming the sweep in" in proc.stderr
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    assert [r["status"] for r in read_csv_rows(sweeps[0] / "results.csv")] == ["ok", "ok"]


def test_retries_rerun_a_failed_job(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        *SINGLE,
        "batch_size=3",
        "retries=2",
        f"hydra.sweep.dir={sweep}",
        "-m",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 1
    assert len(launched(tmp_path / "runs.log")) == 3
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["attempt"] == 3
    assert sorted(p.name for p in (sweep / "0" / "attempts").iterdir()) == ["1", "2"]


@needs_mpi
def test_one_failing_poprun_instance_fails_the_job_and_is_named(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "model=resnet50",
        "system=ipu_m2000",
        "mode=infer",
        "data=generated",
        "batch_size=2,11",
        f"hydra.sweep.dir={sweep}",
        "-m",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 1, proc.stderr
    got = statuses(sweep)
    assert got["2"][0] == "ok"
    assert got["11"][0] == "failed"
    assert "instance 1 failed" in got["11"][1] and "stand-in IPU failure" in got["11"][1]


@pytest.mark.alone  # a sweep killed on purpose
def test_a_sweep_killed_mid_job_keeps_its_results_and_resumes(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *SINGLE, "batch_size=1,5", f"hydra.sweep.dir={sweep}"]
    proc = start_sweeper(
        *args,
        cwd=tmp_path,
        env=standin_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(launched(tmp_path / "runs.log")) < 2:
        time.sleep(0.2)
    assert (sweep / "0" / "result.json").exists()
    first = (sweep / "0" / "result.json").read_bytes()
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep process, not the job's own session
    proc.wait()
    deadline = time.time() + 10  # the job dies with its sweep (no orphan keeps running)
    while stand_ins_alive(tmp_path / "runs.log") and time.time() < deadline:
        time.sleep(0.2)
    assert stand_ins_alive(tmp_path / "runs.log") == []
    assert not (sweep / "1" / "result.json").exists()
    assert not list(sweep.rglob("*.tmp"))

    proc2 = run_sweeper(
        *args, "resume=true", cwd=tmp_path, env={**standin_env, "STANDIN_HEAL": "1"}
    )
    assert proc2.returncode == 0, proc2.stderr
    assert (sweep / "0" / "result.json").read_bytes() == first
    assert [r["status"] for r in read_csv_rows(sweep / "results.csv")] == ["ok", "ok"]


def test_two_sweeps_at_once_do_not_interfere(tmp_path, standin_env) -> None:
    procs = [
        start_sweeper(
            *SINGLE,
            f"batch_size={sizes}",
            f"hydra.sweep.dir={tmp_path / name}",
            "-m",
            cwd=tmp_path,  # one directory for both (their history there, not the repository's)
            env=standin_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, sizes in (("a", "1,2,4"), ("b", "8,16"))
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    a = read_csv_rows(tmp_path / "a" / "results.csv")
    b = read_csv_rows(tmp_path / "b" / "results.csv")
    assert [r["batch_size"] for r in a] == ["1", "2", "4"]
    assert [r["batch_size"] for r in b] == ["8", "16"]
    assert float(b[1]["throughput"]) == pytest.approx(16 * 200.0, rel=0.01)
