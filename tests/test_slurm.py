"""SLURM, for real: sweeps submitted through hydra-submitit-launcher to the local cluster
that scripts/slurm-cluster starts (.ci/run starts it; skipped when it is not up)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    driver_record,
    launched,
    read_csv_rows,
    run_sweeper,
    short_builtin,
    start_sweeper,
    wait_for_driver_exit,
)


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True)
    return proc.returncode == 0 and "up" in proc.stdout


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster (scripts/slurm-cluster start)"),
]
SLURM = "hydra/launcher=slurm_local"
STANDIN = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]


def short_builtin_sweep(tmp_path: Path, *overrides: str) -> Path:
    """A short EfficientNet-B0 sweep of the built-in workload on the local cluster."""
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        SLURM,
        "model=efficientnet_b0",
        *overrides,
        *short_builtin(steps=2),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return sweep


def test_two_job_sweep_of_the_builtin_workload(tmp_path) -> None:
    sweep = short_builtin_sweep(tmp_path, "batch_size=1,2")
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["batch_size"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok")]
    assert all(float(r["throughput"]) > 0 for r in rows)
    # The jobs really ran under SLURM: submitit's folder holds their sbatch logs.
    assert list((sweep / ".submitit").rglob("*_log.out"))
    result = json.loads((sweep / "1" / "result.json").read_text())
    assert result["host"]


def test_a_failing_job_is_failed_with_its_reason(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        SLURM,
        *STANDIN,
        "batch_size=1,3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 1
    rows = {r["batch_size"]: r for r in read_csv_rows(sweep / "results.csv")}
    assert rows["1"]["status"] == "ok"
    assert rows["3"]["status"] == "failed" and "stand-in crash" in rows["3"]["reason"]
    # The submitting side stored both in the history (the default database, where the
    # sweep started); the jobs did not open it.
    assert "history: 2 run(s) stored in sqlite:///outputs/history.db" in proc.stderr
    with sqlite3.connect(tmp_path / "outputs" / "history.db") as conn:
        stored = dict(conn.execute("SELECT batch_size, status FROM runs").fetchall())
    assert stored == {1: "ok", 3: "failed"}


def test_a_cancelled_job_is_recorded_and_the_others_kept(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    proc = start_sweeper(
        "-m",
        SLURM,
        *STANDIN,
        "batch_size=1,5,2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    hanging = None
    while time.time() < deadline and hanging is None:
        runs = launched(tmp_path / "runs.log")
        if any(r["argv"][r["argv"].index("--batch-size") + 1] == "5" for r in runs):
            out = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True
            ).stdout.split()
            hanging = out[0] if out else None
        time.sleep(0.5)
    assert hanging, "the hanging job never started"
    subprocess.run(["scancel", hanging], check=True)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    rows = {r["batch_size"]: r for r in read_csv_rows(sweep / "results.csv")}
    assert rows["1"]["status"] == "ok" and rows["2"]["status"] == "ok"
    assert rows["5"]["status"] == "cancelled", rows["5"]
    assert "CANCELLED" in rows["5"]["reason"]


def test_two_torchrun_instances_inside_one_allocation(tmp_path) -> None:
    sweep = short_builtin_sweep(tmp_path, "mode=train", "system.instances=2", "batch_size=2")
    (row,) = read_csv_rows(sweep / "results.csv")
    assert row["status"] == "ok" and row["instances"] == "2"
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert sorted(result["per_instance"]) == ["0", "1"]
    assert "torchrun" in result["argv"][0]


def test_ctrl_c_cancels_the_submitted_jobs_and_reports_those_that_ended(
    tmp_path, standin_env
) -> None:
    sweep = tmp_path / "sweep"
    proc = start_sweeper(
        "-m",
        SLURM,
        *STANDIN,
        "batch_size=1,5",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        sizes = [
            r["argv"][r["argv"].index("--batch-size") + 1] for r in launched(tmp_path / "runs.log")
        ]
        if "5" in sizes and (sweep / "0" / "result.json").exists():
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the jobs did not start")
    (array,) = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("[0-9]*_[0-9]*")}
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "cancelling 1 SLURM job(s)" in err
    rows = {r["batch_size"]: r for r in read_csv_rows(sweep / "results.csv")}
    assert rows["1"]["status"] == "ok"
    assert rows["5"]["status"] == "cancelled", rows["5"]
    states = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert sorted(states) == [f"{array}_0|COMPLETED", f"{array}_1|CANCELLED by 0"], states


def test_a_resumed_sweep_keeps_its_scheduler_logs_in_its_own_directory(
    tmp_path, standin_env
) -> None:
    args = ["-m", SLURM, *STANDIN, "batch_size=1,3"]
    assert run_sweeper(*args, cwd=tmp_path, env=standin_env).returncode == 1
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    arrays_before = set((sweep / ".submitit").iterdir())
    healed = {**standin_env, "STANDIN_HEAL": "1"}
    proc = run_sweeper(*args, "resume=true", cwd=tmp_path, env=healed)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "outputs" / "sweeps").iterdir()) == [sweep]  # no new directory
    new_logs = set((sweep / ".submitit").iterdir()) - arrays_before
    assert new_logs and list((sweep / ".submitit").rglob("*_log.out"))
    assert [r["status"] for r in read_csv_rows(sweep / "results.csv")] == ["ok", "ok"]


def test_a_controller_that_does_not_answer_is_found_before_submitting(
    tmp_path, standin_env
) -> None:
    """The client pointed at a port where no controller listens (SLURM_CONF): to it, the
    controller is down; nothing may be submitted and no traceback printed."""
    conf = tmp_path / "slurm.conf"
    conf.write_text(Path("/etc/slurm/slurm.conf").read_text() + "\nSlurmctldPort=6999\n")
    env = {**standin_env, "SLURM_CONF": str(conf)}
    proc = run_sweeper("-m", SLURM, *STANDIN, "batch_size=1", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert "the SLURM controller does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists() and launched(tmp_path / "runs.log") == []


def test_an_unknown_partition_is_refused_before_submitting(tmp_path, standin_env) -> None:
    proc = run_sweeper(
        "-m",
        SLURM,
        *STANDIN,
        "batch_size=1",
        "hydra.launcher.partition=nope",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 2
    assert "hydra.launcher.partition=nope: no such SLURM partition (there are: debug)" in (
        proc.stderr
    )


def test_a_refused_submission_is_one_clear_message(tmp_path, standin_env) -> None:
    proc = run_sweeper(
        "-m",
        SLURM,
        *STANDIN,
        "batch_size=1",
        "hydra.launcher.mem_gb=100000",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 2
    assert "the scheduler refused the submission" in proc.stderr
    assert "Memory specification can not be satisfied" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_mpirun_instances_train_inside_one_allocation(tmp_path) -> None:
    """OpenMPI's ranks inside the job's allocation meet through the job's rendezvous file."""
    if shutil.which("mpirun") is None:
        pytest.skip("needs OpenMPI's mpirun")
    sweep = short_builtin_sweep(
        tmp_path, "mode=train", "launcher=mpirun", "system.instances=2", "batch_size=2"
    )
    (row,) = read_csv_rows(sweep / "results.csv")
    assert row["status"] == "ok" and row["instances"] == "2"
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert sorted(result["per_instance"]) == ["0", "1"]
    assert result["argv"][0].endswith("mpirun")


def test_a_batch_search_round_is_one_array_and_a_cancelled_probe_is_retried(
    tmp_path, standin_env
) -> None:
    """hydra/sweeper=batch_search on SLURM: each round of probes is one job array (sacct),
    and the probe at batch size 8, cancelled with scancel while it runs, is tried again in
    the next round: the search still finds the largest batch that fits (24)."""
    sweep = tmp_path / "sweep"
    env = {
        **standin_env,
        "STANDIN_PEAK": "16",
        "STANDIN_OOM_ABOVE": "24",
        "STANDIN_HEAL": "1",
        "STANDIN_STEP_S": "8:0.5,*:0",  # the probe at 8 runs for 3 s (to be cancelled)
    }
    proc = start_sweeper(
        "-m", SLURM, "hydra/sweeper=batch_search", *STANDIN, "hydra.sweeper.max=32",
        "hydra.sweeper.goal=max_fit", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 120
    cancelled = None
    while time.time() < deadline and cancelled is None:
        runs = launched(tmp_path / "runs.log")
        if any(r["argv"][r["argv"].index("--batch-size") + 1] == "8" for r in runs):
            running = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True
            ).stdout.split()
            if running:
                cancelled = running[0]
                subprocess.run(["scancel", cancelled], check=True)
        time.sleep(0.2)
    assert cancelled, "the probe at batch size 8 never ran"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    [cell] = json.loads((sweep / "search.json").read_text())
    assert cell["status"] == "ok" and cell["max_fit"] == {"batch_size": 24, "first_oom": 25}
    assert [p["status"] for p in cell["probes"] if p["batch_size"] == 8] == ["cancelled", "ok"]
    # One submission per round, holding that round's probes (an array of them, or one job:
    # submitit's folders are <array>_<task>, or <job> alone).
    names = [p.name for p in (sweep / ".submitit").iterdir() if p.name[0].isdigit()]
    submissions = {name.split("_")[0] for name in names}
    assert len(submissions) == cell["rounds"]
    tasks = {s: sum(n.startswith(f"{s}_") for n in names) or 1 for s in submissions}
    assert sum(tasks.values()) == cell["jobs"]
    first = min(submissions, key=int)
    states = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", first, "-o", "JobID,State"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(states) == 6  # the ladder 1, 2, 4, 8, 16, 32 in the first array
    assert sum("CANCELLED" in s for s in states) == 1


def _sacct_states(*job_ids: str) -> dict[str, str]:
    """JobID -> State, array tasks one per line (-X: the jobs, not their steps)."""
    lines = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,JobName,State"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    return {line.split("|")[0]: line.split("|")[2] for line in lines}


def _steps_ended(steps: list[str], timeout: float = 30) -> dict[str, str]:
    """The driver steps' final states (the last records its exit status just before its
    process ends, so SLURM may still say RUNNING for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        states = _sacct_states(*steps)
        if not {"RUNNING", "COMPLETING"} & set(states.values()):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


def _status(sweep: Path, cwd: Path) -> str:
    proc = run_sweeper("status", str(sweep), cwd=cwd, keep_flag_position=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_detached_sweep_on_slurm_runs_as_driver_jobs_without_its_session(
    tmp_path, standin_env
) -> None:
    """detach=true with the SLURM launcher: the command returns within seconds; its whole
    session is then gone, and the sweep's driver runs as SLURM jobs of its own (a step that
    submits the array, a step that collects it after `afterany`): results.csv, summary.md and
    the history rows are written; `sweeper status` follows it."""
    sweep = tmp_path / "sweep"
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0.2"}
    began = time.monotonic()
    submitted = start_sweeper(
        "-m", SLURM, *STANDIN, "batch_size=1,2,4,8", f"hydra.sweep.dir={sweep}", "detach=true",
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = submitted.communicate(timeout=60)
    assert submitted.returncode == 0 and time.monotonic() - began < 10, err
    with contextlib.suppress(ProcessLookupError):  # the submitting session, killed whole
        os.killpg(submitted.pid, signal.SIGKILL)
    info = driver_record(sweep)
    assert info["kind"] == "slurm" and info["exit_status"] is None
    assert "its driver runs as SLURM jobs" in _status(sweep, tmp_path)
    # A blocking sweep into the same directory meanwhile: refused, the directory is in use.
    second = run_sweeper(
        "-m", SLURM, *STANDIN, "batch_size=16", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert second.returncode == 2 and "in use by a detached sweep" in second.stderr

    info = wait_for_driver_exit(sweep)
    assert info["exit_status"] == 0
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["batch_size"], r["status"]) for r in rows] == [
        ("1", "ok"), ("2", "ok"), ("4", "ok"), ("8", "ok")
    ]  # fmt: skip
    assert (sweep / "summary.md").exists()
    runs = (
        sqlite3.connect(tmp_path / "outputs" / "history.db")
        .execute("SELECT COUNT(*) FROM runs")
        .fetchone()[0]
    )
    assert runs == 4
    # The driver: two SLURM jobs of its own, both ended (no process of the sweep is left).
    assert len(info["steps"]) == 2
    assert set(_steps_ended(info["steps"]).values()) == {"COMPLETED"}
    final = _status(sweep, tmp_path)
    assert "finished, succeeded (exit status 0" in final and "4 ended (ok 4)" in final


def test_a_detached_batch_search_on_slurm_completes_every_round(tmp_path, standin_env) -> None:
    """Each round is a driver step that submits it; the next step replays the search from
    the chain's record and goes on: all rounds run with no process of the user's session."""
    sweep = tmp_path / "sweep"
    env = {**standin_env, "STANDIN_PEAK": "4", "STANDIN_OOM_ABOVE": "6", "STANDIN_HEAL": "1",
           "STANDIN_STEP_S": "0"}  # fmt: skip
    proc = run_sweeper(
        "-m", SLURM, "hydra/sweeper=batch_search", *STANDIN, "hydra.sweeper.max=8",
        "hydra.sweeper.goal=max_fit", f"hydra.sweep.dir={sweep}", "detach=true",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = wait_for_driver_exit(sweep)
    assert info["exit_status"] == 0, (sweep / "driver.log").read_text()[-3000:]
    [cell] = json.loads((sweep / "search.json").read_text())
    assert cell["status"] == "ok" and cell["max_fit"] == {"batch_size": 6, "first_oom": 7}
    assert cell["rounds"] >= 2 and len(info["steps"]) == cell["rounds"] + 1
    assert set(_steps_ended(info["steps"]).values()) == {"COMPLETED"}
    assert len(read_csv_rows(sweep / "results.csv")) == cell["jobs"]


def test_cancel_stops_a_detached_slurm_sweep_and_resume_finishes_it(tmp_path, standin_env) -> None:
    """`sweeper cancel`: the array's jobs not yet ended are cancelled (sacct), the chain's
    next step records them cancelled and writes the report (exit status 130);
    `resume=true detach=true` then finishes the sweep."""
    sweep = tmp_path / "sweep"
    # Job 0 at once; jobs 1 and 2 for 3 s each (still queued or running when cancelled).
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "1:0,*:0.5"}
    args = ["-m", SLURM, *STANDIN, "batch_size=1,2,4", f"hydra.sweep.dir={sweep}", "detach=true"]
    assert run_sweeper(*args, cwd=tmp_path, env=env).returncode == 0
    deadline = time.monotonic() + 120
    while not (sweep / "0" / "result.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancelled = run_sweeper("cancel", str(sweep), cwd=tmp_path, keep_flag_position=True)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "stopped (cancelled or interrupted) (exit status 130" in cancelled.stdout
    rows = read_csv_rows(sweep / "results.csv")
    assert rows[0]["status"] == "ok" and {r["status"] for r in rows[1:]} == {"cancelled"}
    record = json.loads((sweep / "driver_jobs.json").read_text())
    arrays = {entry["slurm_id"].split("_")[0] for entry in record["jobs"].values()}
    states = _sacct_states(*arrays)
    assert any(state.startswith("CANCELLED") for state in states.values()), states
    # resume=true detach=true: the rest, as a new chain of driver steps.
    resumed = {**env, "STANDIN_STEP_S": "0"}
    assert run_sweeper(*args, "resume=true", cwd=tmp_path, env=resumed).returncode == 0
    info = wait_for_driver_exit(sweep)
    assert info["exit_status"] == 0
    assert [r["status"] for r in read_csv_rows(sweep / "results.csv")] == ["ok"] * 3
    assert set(_steps_ended(info["steps"]).values()) == {"COMPLETED"}


def test_a_history_password_is_refused_before_a_detached_slurm_sweep(tmp_path, standin_env) -> None:
    """SLURM keeps a job's environment in files: a password must not travel in it."""
    url = "history.url=postgresql://bench:secret@127.0.0.1:55432/bench"
    proc = run_sweeper(
        "-m", SLURM, *STANDIN, "batch_size=1", url, f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "detach=true", cwd=tmp_path, env=standin_env,
    )  # fmt: skip
    assert proc.returncode == 2 and "~/.pgpass" in proc.stderr
    assert "secret" not in proc.stderr
    assert not (tmp_path / "sweep" / "driver.json").exists()


def test_a_dead_drivers_queued_jobs_keep_its_directory(tmp_path, standin_env) -> None:
    """A chain whose driver step was killed (no exit status) while its jobs still wait in
    SLURM's queue: no other sweep takes the directory (it would run the jobs twice) until
    they have ended; the message names them."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    queued = subprocess.run(
        ["sbatch", "--parsable", "--hold", "--job-name=sweeper-test", "--wrap=true"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        (sweep / "driver.json").write_text(
            json.dumps({"kind": "slurm", "chain": "c1", "step": "1", "exit_status": None})
        )
        (sweep / "driver_jobs.json").write_text(
            json.dumps({"chain": "c1", "jobs": {"0": {"slurm_id": queued, "overrides": []}}})
        )
        owner = {"pid": 1, "host": "elsewhere", "started": "then", "chain": "c1"}
        (sweep / ".sweep.lock").write_text(json.dumps(owner))
        proc = run_sweeper(
            "-m", SLURM, *STANDIN, "batch_size=1", f"hydra.sweep.dir={sweep}",
            cwd=tmp_path, env=standin_env,
        )  # fmt: skip
        assert proc.returncode == 2
        assert f"1 of its SLURM jobs are still queued or running ({queued})" in proc.stderr
        assert "the driver ended without an exit status" in _status(sweep, tmp_path)
    finally:
        subprocess.run(["scancel", queued], check=False)
    deadline = time.monotonic() + 30
    while subprocess.run(["squeue", "-h", "-j", queued], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    proc = run_sweeper(
        "-m", SLURM, *STANDIN, "batch_size=1", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, env=standin_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no longer running" in proc.stderr  # the dead driver's lock, taken over
