"""Every documented layout of the built-in workload runs: launcher (single, torchrun,
mpirun) x mode (train, infer) x instances (1, 2), for real, with the smallest model and
batch; a layout that is not supported is refused before any job starts, with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import read_csv_rows, run_sweeper

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs OpenMPI's mpirun"),
]
SHORT = [
    "model=efficientnet_b0",
    "batch_size=1",
    "workload.intervals=3",
    "workload.target_rel_ci=null",
    "workload.interval_s=null",
    "workload.warmup_max_s=0",
    "workload.steps_per_interval=1",
]


def builtin_sweep(tmp_path: Path, *overrides: str) -> Path:
    """A short built-in sweep that must succeed; its directory."""
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper("-m", *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return sweep


def test_every_launcher_mode_and_instance_count_runs(tmp_path) -> None:
    sweep = builtin_sweep(
        tmp_path, *SHORT, "launcher=torchrun,mpirun", "mode=train,infer", "system.instances=1,2"
    )
    rows = read_csv_rows(sweep / "results.csv")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    for num in range(8):
        result = json.loads((sweep / str(num) / "result.json").read_text())
        instances = result["instances"]
        assert sorted(result["per_instance"]) == [str(r) for r in range(instances)]
        if instances == 2:
            # The instances' own rates are summed (each reports its local throughput).
            assert result["throughput"]["mean"] > max(
                sum(v["throughput"][1:]) / len(v["throughput"][1:])
                for v in result["per_instance"].values()
            )
    single = run_sweeper("-m", *SHORT, "launcher=single", "mode=train,infer", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-4000:]


def test_mpirun_training_of_two_instances_forms_one_ddp_group(tmp_path) -> None:
    """The README's mpirun example: two ranks that train together (a DDP group of 2)."""
    sweep = builtin_sweep(tmp_path, *SHORT, "mode=train", "launcher=mpirun", "system.instances=2")
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "ok"
    log = (sweep / "0" / "stdout.log").read_text()
    assert "instance=0/2" in log and "instance=1/2" in log
    assert not list((sweep / "0").glob(".rendezvous-*"))  # removed after the run


def test_a_layout_that_cannot_run_is_refused_before_any_job(tmp_path) -> None:
    proc = run_sweeper("-m", *SHORT, "launcher=single", "system.instances=1,2", cwd=tmp_path)
    assert proc.returncode == 2
    assert "launcher=single runs at most 1 instance(s)" in proc.stderr
    assert not (tmp_path / "outputs" / "sweeps").exists()


def test_two_instances_rates_are_summed_over_their_common_window(tmp_path) -> None:
    """torchrun inference: the instances start every interval together (a barrier), and the
    job's figure is the mean over the iterations both reached of the sum of their rates."""
    sweep = builtin_sweep(
        tmp_path,
        "model=efficientnet_b0",
        "batch_size=1",
        "workload.intervals=5",
        "workload.target_rel_ci=null",
        "workload.interval_s=null",
        "workload.warmup_max_s=0",
        "workload.steps_per_interval=2",
        "launcher=torchrun",
        "system.instances=2",
    )
    result = json.loads((sweep / "0" / "result.json").read_text())
    rates = [v["throughput"] for _, v in sorted(result["per_instance"].items())]
    assert [len(r) for r in rates] == [5, 5]
    sums = [a + b for a, b in zip(rates[0][1:], rates[1][1:], strict=True)]
    assert result["throughput"]["mean"] == pytest.approx(sum(sums) / len(sums))
    assert result["throughput"]["n"] == 4
    assert result["combined"] == {"rule": "sum", "instances": 2, "iterations": [2, 5]}
    for rank in (0, 1):
        assert "intervals=in-step" in (sweep / "0" / f"instance-{rank}.log").read_text()
