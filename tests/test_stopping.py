"""However a sweep ends — SIGKILL, SIGTERM, Ctrl-C — no process of its jobs outlives it, and
an interrupted sweep reports what ran and resumes what did not.

Jobs: the Graphcore app stand-in (batch size 5 hangs), single and under the poprun stand-in
on real OpenMPI (4 ranks, each in a process group of its own); the built-in workload under
real torchrun and mpirun.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import launched, read_csv_rows, run_sweeper, start_sweeper

# Sweeps killed on purpose, a deliberate leftover process: run alone (tests/machine_lock.py).
pytestmark = pytest.mark.alone

SINGLE = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]
POPRUN = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=generated"]
needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs OpenMPI's mpirun")


def processes_with(key: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment has key=value (what this test's jobs inherit)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(key) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def job_count(run_log: Path) -> int:
    return len(launched(run_log))


@needs_mpi
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_poprun_rank_outlives_its_sweep(tmp_path, standin_env, sig) -> None:
    """4 hanging ranks, each in its own process group under OpenMPI."""
    run_log = tmp_path / "runs.log"
    proc = start_sweeper(
        "-m",
        *POPRUN,
        "batch_size=5",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env=standin_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert wait_until(lambda: job_count(run_log) >= 4), "the 4 ranks did not start"
    ranks = [
        p
        for p in processes_with("STANDIN_RUN_LOG", str(run_log))
        if p.name() != "mpirun" and "validation.py" in " ".join(p.cmdline())
    ]
    assert len(ranks) == 4
    assert len({os.getpgid(p.pid) for p in ranks}) == 4  # out of reach of one process group
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert wait_until(lambda: not processes_with("STANDIN_RUN_LOG", str(run_log)), 10), [
        p.cmdline() for p in processes_with("STANDIN_RUN_LOG", str(run_log))
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_sweep_reports_what_ran_and_resumes_the_rest(
    tmp_path, standin_env, sig
) -> None:
    sweep = tmp_path / "sweep"
    run_log = tmp_path / "runs.log"
    args = ["-m", *SINGLE, "batch_size=1,5,2", f"hydra.sweep.dir={sweep}"]
    proc = start_sweeper(
        *args,
        cwd=tmp_path,
        env=standin_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert wait_until(lambda: job_count(run_log) >= 2)  # the second job (hanging) runs
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 10  # within seconds
    assert proc.returncode == 128 + sig
    assert "Traceback" not in err
    rows = {r["batch_size"]: r for r in read_csv_rows(sweep / "results.csv")}
    assert rows["1"]["status"] == "ok" and float(rows["1"]["throughput"]) == 200.0
    assert rows["5"]["status"] == "cancelled"
    assert rows["5"]["reason"] == f"interrupted by {signal.Signals(sig).name}"
    assert "2" not in rows
    assert "1 job(s) not run" in err and "job 2: " in err
    # The job not run has the directory written ahead of it, and no log: it printed nothing.
    assert (sweep / "2" / ".hydra").is_dir() and not list((sweep / "2").glob("*.log"))
    assert f"hydra.sweep.dir={sweep}" in err and "resume=true" in err
    assert (sweep / "summary.md").exists()
    assert not processes_with("STANDIN_RUN_LOG", str(run_log))

    before = job_count(run_log)
    healed = {**standin_env, "STANDIN_HEAL": "1"}
    resumed = run_sweeper(*args, "resume=true", cwd=tmp_path, env=healed)
    assert resumed.returncode == 0, resumed.stderr
    rerun = [r["argv"][r["argv"].index("--batch-size") + 1] for r in launched(run_log)[before:]]
    assert sorted(rerun) == ["2", "5"]
    assert {r["status"] for r in read_csv_rows(sweep / "results.csv")} == {"ok"}


def test_a_second_ctrl_c_ends_at_once_and_the_job_still_dies(tmp_path, standin_env) -> None:
    run_log = tmp_path / "runs.log"
    proc = start_sweeper(
        "-m",
        *SINGLE,
        "batch_size=5",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env={**standin_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert wait_until(lambda: job_count(run_log) >= 1)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert proc.returncode == 130
    assert wait_until(lambda: not processes_with("STANDIN_RUN_LOG", str(run_log)), 10)


def test_a_process_left_by_a_dead_sweep_is_named_before_any_job(tmp_path, standin_env) -> None:
    """A job's daemon that escaped (setsid) and outlived its sweep, whose mark it carries."""
    dead_sweep = f"{os.uname().nodename}:999999999:1"
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, "SWEEPER_SWEEP_ID": dead_sweep},
        start_new_session=True,
    )
    try:
        proc = run_sweeper(
            "-m",
            *SINGLE,
            "batch_size=1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            cwd=tmp_path,
            env=standin_env,
        )
        assert proc.returncode == 2
        assert f"process {leftover.pid} " in proc.stderr and f"kill {leftover.pid}" in proc.stderr
        assert not (tmp_path / "runs.log").exists()  # nothing was measured
    finally:
        leftover.kill()
        leftover.wait()


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("launcher", ["torchrun", "mpirun"])
def test_no_builtin_instance_outlives_a_killed_sweep(tmp_path, launcher) -> None:
    pytest.importorskip("torchvision")
    marker = str(tmp_path)
    proc = start_sweeper(
        "-m",
        "model=efficientnet_b0",
        "mode=infer",
        "batch_size=1",
        f"launcher={launcher}",
        "system.instances=2",
        "workload.intervals=1000",
        "workload.target_rel_ci=null",
        "workload.interval_s=null",
        "workload.warmup_max_s=0",
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
        env={"TEST_MARKER": marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def instances() -> list[psutil.Process]:
        return [
            p
            for p in processes_with("TEST_MARKER", marker)
            if "sweeper.workload" in " ".join(p.cmdline())
        ]

    assert wait_until(lambda: len(instances()) >= 2, 120), "the instances did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_until(lambda: not processes_with("TEST_MARKER", marker), 15), [
        p.cmdline() for p in processes_with("TEST_MARKER", marker)
    ]


def test_result_of_an_interrupted_job_records_why(tmp_path, standin_env) -> None:
    """A single run (no -m) stopped by SIGTERM: its result.json says so; exit 143."""
    run_log = tmp_path / "runs.log"
    proc = start_sweeper(
        *SINGLE,
        "batch_size=5",
        cwd=tmp_path,
        env=standin_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert wait_until(lambda: job_count(run_log) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "Traceback" not in err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["status"], result["reason"]) == ("cancelled", "interrupted by SIGTERM")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_a_large_sweep_is_checked_starts_no_job(tmp_path, standin_env, sig) -> None:
    """A large sweep's jobs are checked by this process and a forked one: a stop sent to
    the whole process group (Ctrl-C in a terminal; SIGTERM, as SLURM's scancel sends it to
    every process of a job) is answered once, by the sweep; no job starts, and the checking
    process is gone with it."""
    run_log = tmp_path / "runs.log"
    sweep = tmp_path / "sweep"
    proc = start_sweeper(
        "-m", *SINGLE, "batch_size=range(1,601)", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, env=standin_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    sweeper = psutil.Process(proc.pid)
    assert wait_until(lambda: bool(sweeper.children()), 30)  # the forked checker runs
    checkers = sweeper.children()
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert err.count(f"{signal.Signals(sig).name} received") == 1 and "Traceback" not in err
    assert "600 job(s) not run" in err and "resume=true" in err
    assert job_count(run_log) == 0
    assert not [p for p in checkers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
