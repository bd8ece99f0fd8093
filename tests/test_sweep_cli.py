"""End to end: real sweeps of the built-in workload from the command line, and the
collector's report and compare commands on their results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import read_csv_rows, run_sweeper, short_builtin
from tests.machine_lock import machine_to_itself

# The module's sweep takes the machine to itself (its rates are judged): handed out last.
pytestmark = pytest.mark.late

RESNET50_GFLOP_PER_IMAGE = 8.2  # forward at 224x224 (4.1 GMAC)


def fp32_peak_gflops(threads: int = 2, repeats: int = 5) -> float:
    """This machine's fp32 rate for the work a CNN does, measured now with the workload's
    threads: a 1x1 convolution (a matrix multiply run by oneDNN, as the model's layers are).
    torch.mm is not the measure: it runs in MKL, which reaches 40% of that on AMD hosts.
    Machines of one kind differ: a figure from one host is wrong on the next."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)
    x = torch.randn(4, 1024, 32, 32).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(1024, 1024, 1, bias=False).eval()
    best = float("inf")
    with torch.inference_mode():
        conv(x)  # warm-up
        for _ in range(repeats):
            began = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - began)
    return 2 * 4 * 32 * 32 * 1024 * 1024 / best / 1e9


@pytest.fixture(scope="module")
def resnet_sweep(tmp_path_factory) -> Path:
    pytest.importorskip("torchvision")
    sweep = tmp_path_factory.mktemp("resnet") / "sweep"
    args = [
        "model=resnet50",
        "mode=infer",
        "batch_size=1,2",
        "workload.max_seconds=6",  # the adaptive rule, with a shorter budget than 15 s
        "workload.optimize=none",  # eager (TorchScript's freeze is tested with the README)
        "-m",
        f"hydra.sweep.dir={sweep}",
    ]
    with machine_to_itself():  # its rates and latencies are judged below
        proc = run_sweeper(*args, cwd=sweep.parent)
        assert proc.returncode == 0, proc.stderr
        if any(row["unstable"] == "True" for row in read_csv_rows(sweep / "results.csv")):
            # This shared VM stalls now and then (seen: three 0.5 s intervals at a sixth of
            # the rate, the machine otherwise idle); measured again as a user would.
            proc = run_sweeper(*args, "resume=true", "rerun_unstable=true", cwd=sweep.parent)
            assert proc.returncode == 0, proc.stderr
    return sweep


def test_resnet50_inference_sweep_gives_plausible_numbers(resnet_sweep: Path) -> None:
    rows = read_csv_rows(resnet_sweep / "results.csv")
    assert [(r["batch_size"], r["status"], r["instances"]) for r in rows] == [
        ("1", "ok", "1"),
        ("2", "ok", "1"),
    ]
    with machine_to_itself():
        roofline = 1.1 * fp32_peak_gflops() / RESNET50_GFLOP_PER_IMAGE  # images/s, +10% noise
    for row in rows:
        throughput = float(row["throughput"])
        assert 2 < throughput < roofline
        # latency per batch agrees with throughput: batch / (latency in s) ~ throughput
        implied = int(row["batch_size"]) / (float(row["latency_ms"]) / 1000)
        assert implied == pytest.approx(throughput, rel=0.25)
    for num in (0, 1):
        # Measured until the 95% interval was within 2% of the mean (the default target), or
        # up to the time budget, then marked wide with that reason.
        result = json.loads((resnet_sweep / str(num) / "result.json").read_text())
        measured = result["measurement"]
        assert measured["intervals"] >= 5 and result["throughput"]["n"] == measured["intervals"] - 1
        assert measured["stopped"] in ("target", "budget") and measured["target_rel_ci"] == 0.02
        if measured["stopped"] == "target":
            assert measured["rel_ci95"] <= 0.02 + 0.005  # the workload's figure, re-derived
        else:
            assert result["wide"] and "workload.max_seconds" in result["reason"]
    result = json.loads((resnet_sweep / "0" / "result.json").read_text())
    assert result["versions"]["torch"] and result["host"] and result["exit_code"] == 0
    assert (resnet_sweep / "multirun.yaml").exists()
    assert (resnet_sweep / "0" / ".hydra" / "config.yaml").exists()
    summary = (resnet_sweep / "summary.md").read_text()
    assert "## builtin / resnet50 / cpu / infer / synthetic / fp32" in summary
    assert (resnet_sweep / "throughput.png").read_bytes()[:4] == b"\x89PNG"


def test_efficientnet_b0_training_sweep(tmp_path: Path) -> None:
    """A training sweep at the model's own image size; a fixed count of intervals (the
    adaptive rule on training is test_measurement's: at its defaults this took 21 s)."""
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "model=efficientnet_b0",
        "mode=train",
        "batch_size=2",
        *short_builtin(optimize=None, image_size=None),
        "-m",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = read_csv_rows(sweep / "results.csv")
    assert row["status"] == "ok" and 0.5 < float(row["throughput"]) < 100
    assert row["latency_ms"] == ""


def collect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.collect", *args], capture_output=True, text=True
    )


def scaled_copy(sweep: Path, dest: Path, factor: float) -> Path:
    """A copy of a sweep whose figures are scaled, as if measured by another version."""
    shutil.copytree(sweep, dest)
    for path in dest.rglob("result.json"):
        data = json.loads(path.read_text())
        for key in ("mean", "median", "min", "max"):
            data["throughput"][key] *= factor
        data["job_dir"] = str(path.parent)
        path.write_text(json.dumps(data))
    return dest


def test_report_rebuilds_and_merges_sweeps(resnet_sweep: Path, tmp_path: Path) -> None:
    other = scaled_copy(resnet_sweep, tmp_path / "other", 1.0)
    (other / "results.csv").unlink()
    proc = collect("report", str(other))
    assert proc.returncode == 0, proc.stderr
    assert read_csv_rows(other / "results.csv") == [
        {**row, "job_dir": str(other / Path(row["job_dir"]).name), "sweep": str(other)}
        for row in read_csv_rows(resnet_sweep / "results.csv")
    ]
    merged = tmp_path / "merged"
    proc = collect("report", str(resnet_sweep), str(other), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    assert len(read_csv_rows(merged / "results.csv")) == 4


def test_compare_flags_a_regression(resnet_sweep: Path, tmp_path: Path) -> None:
    # Half the throughput: beyond the tolerance and beyond both figures' noise (this VM's
    # 6-second measurements reach ±12%: a 20% drop can be "within noise").
    slower = scaled_copy(resnet_sweep, tmp_path / "slower", 0.5)
    proc = collect("compare", str(resnet_sweep), str(slower), "--tolerance", "5")
    assert proc.returncode == 1
    assert proc.stdout.count("REGRESSION") == 2 and "-50.00" in proc.stdout
    same = collect("compare", str(resnet_sweep), str(resnet_sweep / "results.csv"))
    assert same.returncode == 0 and "REGRESSION" not in same.stdout


def test_compare_against_reference_figures(resnet_sweep: Path, tmp_path: Path) -> None:
    measured = {
        r["batch_size"]: float(r["throughput"]) for r in read_csv_rows(resnet_sweep / "results.csv")
    }
    refs = tmp_path / "refs.yaml"
    common = {"model": "resnet50", "system": "cpu", "mode": "infer", "data": "synthetic"}
    refs.write_text(
        yaml.safe_dump(
            [
                {**common, "batch_size": 1, "throughput": measured["1"] * 1.02, "lower": -0.05},
                {**common, "batch_size": 2, "throughput": measured["2"] * 2, "lower": -0.10},
            ]
        )
    )
    proc = collect("compare", "--reference", str(refs), str(resnet_sweep))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "within" in lines[1] and "BELOW REFERENCE" in lines[2]


def _with_status(sweep: Path, target: Path, status: str) -> Path:
    """A copy of a sweep whose runs all ended with `status` (no figure)."""
    copy = scaled_copy(sweep, target, 1.0)
    for path in copy.glob("*/result.json"):
        data = json.loads(path.read_text())
        data["status"], data["throughput"] = status, None
        path.write_text(json.dumps(data))
    (copy / "results.csv").unlink()
    return copy


def test_compare_fails_on_failed_and_missing_runs_and_errs_on_no_input(
    resnet_sweep: Path, tmp_path: Path
) -> None:
    failed = _with_status(resnet_sweep, tmp_path / "failed", "timeout")
    proc = collect("compare", str(resnet_sweep), str(failed))
    assert proc.returncode == 1
    assert proc.stdout.count("FAILED (timeout)") == 2
    partial = scaled_copy(resnet_sweep, tmp_path / "partial", 1.0)
    (partial / "results.csv").unlink()
    shutil.rmtree(partial / "1")
    proc = collect("compare", str(resnet_sweep), str(partial))
    assert proc.returncode == 1 and "missing" in proc.stdout
    proc = collect("compare", str(resnet_sweep), str(tmp_path / "nope"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'nope'}: no such file or directory" in proc.stderr


def test_compare_reads_precision_as_text(resnet_sweep: Path, tmp_path: Path) -> None:
    """16.32 is a precision, not a float: both sides join on it as written."""
    copies = []
    for name in ("a", "b"):
        copy = scaled_copy(resnet_sweep, tmp_path / name, 1.0)
        for path in copy.glob("*/result.json"):
            data = json.loads(path.read_text())
            data["precision"] = "16.32"
            path.write_text(json.dumps(data))
        assert collect("report", str(copy)).returncode == 0
        copies.append(copy)
    proc = collect("compare", str(copies[0] / "results.csv"), str(copies[1]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("same") == 2 and "16.32" in proc.stdout


def test_a_reference_must_match_exactly_one_row_with_known_keys(
    resnet_sweep: Path, tmp_path: Path
) -> None:
    measured = float(read_csv_rows(resnet_sweep / "results.csv")[0]["throughput"])
    refs = tmp_path / "refs.yaml"
    refs.write_text(yaml.safe_dump([{"model": "resnet50", "throughput": measured * 4}]))
    proc = collect("compare", "--reference", str(refs), str(resnet_sweep))
    assert proc.returncode == 2
    assert "matches 2 rows: give batch_size to choose one" in proc.stderr
    refs.write_text(yaml.safe_dump([{"model": "resnet50", "batchsize": 1, "throughput": 1.0}]))
    proc = collect("compare", "--reference", str(refs), str(resnet_sweep))
    assert proc.returncode == 2 and "unknown key(s) batchsize" in proc.stderr
    refs.write_text("- {model: [unclosed\n")
    proc = collect("compare", "--reference", str(refs), str(resnet_sweep))
    assert proc.returncode == 2 and "not YAML" in proc.stderr and "Traceback" not in proc.stderr
    failed = _with_status(resnet_sweep, tmp_path / "failed", "failed")
    refs.write_text(yaml.safe_dump([{"batch_size": 1, "throughput": 1.0, "upper": None}]))
    proc = collect("compare", "--reference", str(refs), str(failed))
    assert proc.returncode == 1 and "FAILED (failed)" in proc.stdout
