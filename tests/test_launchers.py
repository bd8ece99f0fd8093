"""Instance launchers: rendering, option checking, and real multi-instance runs (poprun
through its stand-in on real OpenMPI, mpirun, torchrun)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweeper import launchers
from tests.conftest import launched, read_csv_rows, run_sweeper, short_builtin

needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs OpenMPI's mpirun")


def test_poprun_renders_every_option_it_is_given() -> None:
    launcher = launchers.create(
        {
            "name": "poprun",
            "num_replicas": 8,
            "ipus_per_replica": 2,
            "numa_aware": "yes",
            "host": "h1,h2",
            "vipu_partition": "p16",
            "vipu_allocation": "a1",
            "mpi_global_args": "--tag-output",
            "mpi_local_args": "-x FOO",
            "only_output_from_instance": 0,
            "executable_cache_path": "/tmp/cache",
        },
        instances=4,
    )
    argv = launcher.command(["python3", "validation.py", "--batch-size", "4"])
    assert argv[0] == "poprun" and argv[-4:] == ["python3", "validation.py", "--batch-size", "4"]
    assert set(argv[1:-4]) == {
        "--num-instances=4",
        "--num-replicas=8",
        "--ipus-per-replica=2",
        "--numa-aware=yes",
        "--host=h1,h2",
        "--vipu-partition=p16",
        "--vipu-allocation=a1",
        "--mpi-global-args=--tag-output",
        "--mpi-local-args=-x FOO",
        "--only-output-from-instance=0",
        "--executable-cache-path=/tmp/cache",
    }
    assert launcher.environment() == {"OMPI_MCA_orte_tag_output": "1"}


def test_a_misspelt_launcher_option_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(launchers.LauncherError, match="num_replica") as info:
        launchers.create({"name": "poprun", "num_replica": 4}, instances=4)
    assert "num_replicas" in str(info.value)


def test_an_unknown_launcher_lists_the_known_ones() -> None:
    with pytest.raises(launchers.LauncherError, match="mpirun, poprun, single, torchrun"):
        launchers.create({"name": "srun"}, instances=1)


def test_torchrun_with_one_instance_runs_the_workload_directly() -> None:
    argv = ["python", "-m", "sweeper.workload"]
    assert launchers.create({"name": "torchrun"}, instances=1).command(argv) == argv
    two = launchers.create({"name": "torchrun"}, instances=2).command(argv)
    assert "--nproc-per-node=2" in two and two[-3:] == argv


def test_failed_instances_are_read_from_the_launchers_report() -> None:
    mpi = launchers.create({"name": "mpirun"}, instances=2)
    report = "The first process to do so was:\n\n  Process name: [[4242,1],1]\n  Exit code: 3\n"
    assert mpi.failed_instances(report) == [1]
    torchrun = launchers.create({"name": "torchrun"}, instances=2)
    assert torchrun.failed_instances("  rank      : 1 (local_rank: 1)\n  exitcode  : 1") == [1]


@needs_mpi
def test_poprun_runs_four_instances_and_reports_the_seeds_figure(tmp_path, standin_env) -> None:
    """The issue's acceptance: the seed's generated-data sweep through poprun."""
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        "model=resnet50",
        "system=ipu_m2000",
        "mode=infer",
        "data=generated",
        "batch_size=2,4",
        f"app_dir={standin_env['GRAPHCORE_CNN_APP_DIR']}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 0, proc.stderr
    runs = launched(tmp_path / "runs.log")
    for size in ("2", "4"):
        ranks = [r for r in runs if r["argv"][r["argv"].index("--batch-size") + 1] == size]
        assert sorted(r["rank"] for r in ranks) == [0, 1, 2, 3]
        assert {r["popdist"]["POPDIST_NUM_TOTAL_REPLICAS"] for r in ranks} == {"4"}
        assert sorted(r["popdist"]["POPDIST_REPLICA_INDEX_OFFSET"] for r in ranks) == list("0123")
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["batch_size"], r["instances"], r["status"]) for r in rows] == [
        ("2", "4", "ok"),
        ("4", "4", "ok"),
    ]
    for row, job in zip(rows, ("0", "1"), strict=True):
        result = json.loads((sweep / job / "result.json").read_text())
        values_per_instance = [i["throughput"] for i in result["per_instance"].values()]
        values = [v for inst in values_per_instance for v in inst[1:]]
        assert len(result["per_instance"]) == 4
        assert float(row["throughput"]) == pytest.approx(sum(values) / len(values))
        assert result["throughput"]["dropped"] == 1  # the first iteration, of each instance
        assert result["throughput"]["n"] == min(len(v) for v in values_per_instance) - 1
        assert all((sweep / job / f"instance-{i}.log").exists() for i in range(4))


@needs_mpi
@pytest.mark.slow
def test_mpirun_runs_two_ranks_of_the_builtin_workload(tmp_path) -> None:
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        "model=efficientnet_b0",
        "launcher=mpirun",
        "system.instances=2",
        "batch_size=1",
        *short_builtin(steps=2),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "ok" and sorted(result["per_instance"]) == ["0", "1"]
    per_rank = [inst["throughput"] for inst in result["per_instance"].values()]
    summed = [a + b for a, b in zip(per_rank[0][1:], per_rank[1][1:], strict=True)]
    assert result["throughput"]["mean"] == pytest.approx(sum(summed) / len(summed))
    assert "instance=1/2" in (sweep / "0" / "instance-1.log").read_text()


@pytest.mark.slow
def test_torchrun_trains_resnet50_on_two_instances(tmp_path) -> None:
    """The issue's acceptance: two real DDP instances; results.csv shows 2 and the sum."""
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        "model=resnet50",
        "system=cpu",
        "system.instances=2",
        "mode=train",
        "batch_size=2",
        *short_builtin(steps=2),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = read_csv_rows(sweep / "results.csv")
    assert row["instances"] == "2" and row["status"] == "ok"
    result = json.loads((sweep / "0" / "result.json").read_text())
    a, b = (result["per_instance"][k]["throughput"] for k in ("0", "1"))
    assert float(row["throughput"]) == pytest.approx(((a[1] + b[1]) + (a[2] + b[2])) / 2)
    log = Path(sweep / "0" / "instance-1.log").read_text()
    assert "instance=1/2" in log and "loss=" in log
