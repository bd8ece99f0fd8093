"""What the preflight lets through must run, and what cannot run is caught before any job:
paths checked as the job will use them, interpreters on PATH, enough intervals; and resume
with custom job directories. Workload: the Graphcore app stand-in unless said otherwise."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GRAPHCORE_APP, launched, read_csv_rows, run_sweeper

TRAIN = ["model=resnet50", "system=ipu_m2000", "mode=train"]
INFER = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]


def test_the_dataset_check_reads_the_configured_datasets_dir(tmp_path, standin_env) -> None:
    data = tmp_path / "imagenet"
    data.mkdir()
    sweep = tmp_path / "sweep"
    ok = run_sweeper(
        "-m",
        *TRAIN,
        f"datasets_dir={data}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,  # DATASETS_DIR unset
    )
    assert ok.returncode == 0, ok.stderr
    (run,) = launched(tmp_path / "runs.log")
    assert f"{data}/" in run["argv"]
    env = {**standin_env, "DATASETS_DIR": str(data)}
    refused = run_sweeper("-m", *TRAIN, "datasets_dir=/nope", cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert "datasets_dir=/nope does not exist" in refused.stderr
    assert len(launched(tmp_path / "runs.log")) == 1  # nothing more ran


def test_relative_paths_are_taken_from_the_launch_directory(tmp_path, standin_env) -> None:
    shutil.copytree(GRAPHCORE_APP, tmp_path / "app")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        *INFER,
        "batch_size=1,2",
        "app_dir=app",
        "hydra.job.chdir=true",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={**standin_env, "GRAPHCORE_CNN_APP_DIR": None},
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in read_csv_rows(sweep / "results.csv")] == ["ok", "ok"]
    assert {r["cwd"] for r in launched(tmp_path / "runs.log")} == {str(tmp_path / "app")}


def test_a_job_that_cannot_start_still_writes_its_result(tmp_path, standin_env) -> None:
    """The interpreter is there at the preflight and gone for the second job."""
    python = tmp_path / "vanishing-python"
    python.write_text(f'#!/bin/sh\nmv "$0" "$0.gone"\nexec {shutil.which("python3")} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        *INFER,
        "batch_size=1,2",
        f"app_python={python}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    rows = {r["batch_size"]: r for r in read_csv_rows(sweep / "results.csv")}
    assert rows["1"]["status"] == "ok"
    assert rows["2"]["status"] == "failed"
    assert "could not start" in rows["2"]["reason"] and str(python) in rows["2"]["reason"]
    assert (sweep / "1" / "result.json").exists()


def test_an_interpreter_not_on_path_is_refused(tmp_path, standin_env) -> None:
    proc = run_sweeper("-m", *INFER, "app_python=python9", cwd=tmp_path, env=standin_env)
    assert proc.returncode == 2
    assert "command.program 'python9' is not on PATH" in proc.stderr
    assert "give app_python= the interpreter of its environment" in proc.stderr
    assert launched(tmp_path / "runs.log") == []


def test_intervals_must_outnumber_the_dropped_ones(tmp_path) -> None:
    proc = run_sweeper(
        "-m", "workload.intervals=1", "workload.target_rel_ci=null", "dry_run=true", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "workload.intervals=1: must be more than workload.metrics.drop_first (1)" in (
        proc.stderr
    )


@pytest.mark.alone  # timing
@pytest.mark.slow
def test_the_time_limit_counts_the_jobs_own_time_only(tmp_path) -> None:
    """The fork server's start (torch's import, seconds) is not the first job's time."""
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        "model=efficientnet_b0",
        "batch_size=1",
        "workload.intervals=3",
        "workload.target_rel_ci=null",
        "workload.interval_s=null",
        "workload.warmup_max_s=0",
        "workload.steps_per_interval=3",  # about a second of its own on this machine
        "workload.optimize=none",
        "timeout_s=3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = read_csv_rows(sweep / "results.csv")
    assert row["status"] == "ok"


def test_resume_with_override_dirname_subdirs_reruns_only_what_failed(
    tmp_path, standin_env
) -> None:
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *INFER,
        "batch_size=1,3",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
    ]
    assert run_sweeper(*args, cwd=tmp_path, env=standin_env).returncode == 1
    before = len(launched(tmp_path / "runs.log"))
    healed = {**standin_env, "STANDIN_HEAL": "1"}
    proc = run_sweeper(*args, "resume=true", "retries=1", cwd=tmp_path, env=healed)
    assert proc.returncode == 0, proc.stderr
    rerun = launched(tmp_path / "runs.log")[before:]
    assert [r["argv"][r["argv"].index("--batch-size") + 1] for r in rerun] == ["3"]
    job_dirs = sorted(p.name for p in sweep.iterdir() if (p / "result.json").exists())
    assert all("resume" not in name and "retries" not in name for name in job_dirs), job_dirs
    rows = read_csv_rows(sweep / "results.csv")
    assert sorted((r["batch_size"], r["status"]) for r in rows) == [("1", "ok"), ("3", "ok")]


def test_the_report_counts_each_configuration_once(tmp_path, standin_env) -> None:
    """Two result.json of one configuration in a sweep directory (a job directory of an
    earlier layout): `collect report` keeps the newer one."""
    sweep = tmp_path / "sweep"
    args = ["-m", *INFER, "batch_size=1,2", f"hydra.sweep.dir={sweep}"]
    assert run_sweeper(*args, cwd=tmp_path, env=standin_env).returncode == 0
    shutil.copytree(sweep / "0", sweep / "old-0")
    os.utime(sweep / "old-0" / "result.json", (1, 1))
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "report", str(sweep)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(sweep / "results.csv")
    assert sorted((r["batch_size"], Path(r["job_dir"]).name) for r in rows) == [
        ("1", "0"),
        ("2", "1"),
    ]
