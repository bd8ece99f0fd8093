"""A single run (no -m), for real: the first thing a Hydra user types."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import run_sweeper, short_builtin, start_sweeper

SINGLE = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]


@pytest.mark.slow
def test_single_builtin_training_run_writes_its_result(tmp_path) -> None:
    pytest.importorskip("torchvision")
    proc = run_sweeper(
        "model=efficientnet_b0",
        "mode=train",
        "batch_size=2",
        *short_builtin(steps=1),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert (result["model"], result["mode"], result["batch_size"]) == (
        "efficientnet_b0",
        "train",
        2,
    )
    assert result["throughput"]["n"] == 2 and result["throughput"]["mean"] > 0
    # The figure and where the result is, in one line.
    assert f"{result['throughput']['mean']:.2f} samples/s" in proc.stdout
    assert str(run_dir / "result.json") in proc.stdout


def test_a_failed_single_run_exits_non_zero_with_its_result(tmp_path, standin_env) -> None:
    proc = run_sweeper(*SINGLE, "batch_size=3", cwd=tmp_path, env=standin_env)
    assert proc.returncode == 1
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "exit code 3" in result["reason"]
    assert "result: failed: " in proc.stdout


def test_single_runs_started_together_get_directories_of_their_own(tmp_path, standin_env) -> None:
    procs = [
        start_sweeper(
            *SINGLE,
            f"batch_size={b}",
            cwd=tmp_path,
            env=standin_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for b in (1, 2, 4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    results = [
        json.loads((d / "result.json").read_text())
        for d in (tmp_path / "outputs" / "runs").iterdir()
    ]
    got = sorted((r["batch_size"], r["throughput"]["mean"], r["throughput"]["n"]) for r in results)
    assert got == [(1, 200.0, 9), (2, 400.0, 9), (4, 800.0, 9)]
