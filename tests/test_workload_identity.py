"""A declared workload is itself everywhere: its own unit and only its own identity in every
table, plot, result.json and the history; its flags in the form its program takes.

Two real third-party programs: sysbench (Debian's package, which takes only `--flag=value`)
and a small program written here that prints per-iteration rates in a unit of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from sweeper.collect import report
from tests.conftest import read_csv_rows, run_sweeper

pytestmark = pytest.mark.skipif(shutil.which("sysbench") is None, reason="apt-get install sysbench")

SYSBENCH = """\
name: sysbench_cpu
command:
  program: sysbench
  positional: [cpu, run]
  flag_style: equals
  args:
    --cpu-max-prime: ${batch_size}
    --time: 3
    --threads: 1
    --report-interval: 1
metrics:
  formats:
    sysbench:
      throughput: 'eps: (?P<value>[\\d.]+) '
      latency_ms: 'lat \\(ms,95%\\): (?P<value>[\\d.]+)'
  unit: events/s
"""

COPYBENCH = '''#!/usr/bin/env python3
"""Copies a buffer of --block-kb KiB and prints each iteration's rate in MB/s."""
import argparse, time
p = argparse.ArgumentParser()
p.add_argument("--block-kb", type=int, required=True)
a = p.parse_args()
block = bytearray(a.block_kb * 1024)
for i in range(6):
    began, copies = time.perf_counter(), 0
    while time.perf_counter() - began < 0.2:
        bytes(block)
        copies += 1
    seconds = time.perf_counter() - began
    print(f"iteration {i}: {copies * len(block) / seconds / 1e6:.1f} MB/s "
          f"per copy {seconds / copies * 1e6:.2f} us", flush=True)
'''


def copybench_yaml(program: Path) -> str:
    return f"""\
name: copybench
command:
  program: {sys.executable}
  positional: [{program}]
  args:
    --block-kb: ${{batch_size}}
metrics:
  formats:
    copybench:
      throughput: 'iteration \\d+: (?P<value>[\\d.]+) MB/s'
      latency_ms: 'per copy (?P<value>[\\d.]+) us$'
  unit: MB/s
  latency_unit: us
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    directory = tmp_path / "conf"
    (directory / "workload").mkdir(parents=True)
    (directory / "workload" / "sysbench_cpu.yaml").write_text(SYSBENCH)
    program = tmp_path / "copybench.py"
    program.write_text(COPYBENCH)
    (directory / "workload" / "copybench.yaml").write_text(copybench_yaml(program))
    return directory


def test_a_declared_program_carries_its_unit_and_only_its_identity(tmp_path, conf) -> None:
    db = f"sqlite:///{tmp_path / 'history.db'}"
    sweep = tmp_path / "sysbench"
    proc = run_sweeper(
        "--config-dir", str(conf), "workload=sysbench_cpu", "batch_size=1000,4000",
        f"hydra.sweep.dir={sweep}", f"history.url={db}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Its command line in the form sysbench takes.
    [argv] = {tuple(json.loads((sweep / "0" / "result.json").read_text())["argv"])}
    assert "--cpu-max-prime=1000" in argv and "--threads=1" in argv
    rows = read_csv_rows(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {r["unit"] for r in rows} == {"events/s"} and {r["latency_unit"] for r in rows} == {"ms"}
    for group in ("model", "system", "mode", "data", "precision"):
        assert {r[group] for r in rows} == {""}, group
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["unit"] == "events/s" and result["model"] is None
    # The terminal table, summary.md and the plot: its unit, none of the CNN groups.
    assert "throughput events/s" in proc.stderr and "samples/s" not in proc.stderr
    assert "resnet50" not in proc.stderr
    summary = (sweep / "summary.md").read_text()
    assert "throughput (events/s)" in summary and "## sysbench_cpu\n" in summary
    assert "resnet50" not in summary and "None" not in summary
    frame = report.results_frame(report.load_results([sweep]))
    figure = report.figure(frame)
    assert figure.axes[0].get_ylabel() == "throughput (events/s)"
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    # A noisy machine may mark a run unstable; that mark is the plot's, not a series.
    marker = "unstable (summary.md says why)"
    assert [label for label in labels if label != marker] == ["sysbench_cpu 1x"]
    assert (marker in labels) == bool(frame["unstable"].any())

    # A second program with a unit of its own, in the same history.
    other = tmp_path / "copybench"
    proc = run_sweeper(
        "--config-dir", str(conf), "workload=copybench", "batch_size=64,256",
        f"hydra.sweep.dir={other}", f"history.url={db}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "throughput MB/s" in proc.stderr and "latency us" in proc.stderr
    stored = create_engine(db).connect().execute(
        text("SELECT r.workload, r.model, m.metric, m.unit FROM runs r JOIN metrics m "
             "ON m.run_key = r.key")
    ).all()  # fmt: skip
    units = {(w, metric, unit) for w, model, metric, unit in stored}
    assert units == {
        ("sysbench_cpu", "throughput", "events/s"), ("sysbench_cpu", "latency_ms", "ms"),
        ("copybench", "throughput", "MB/s"), ("copybench", "latency_ms", "us"),
    }  # fmt: skip
    assert {model for _, model, _, _ in stored} == {""}
    # history trend over both: one panel per unit, never two units on one axis.
    from sweeper.history import trend
    from sweeper.history.store import Store

    rows_frame = trend.trend_frame(Store(db).runs_frame(), "throughput")
    axes = trend.figure(rows_frame, "throughput").axes
    assert sorted(ax.get_ylabel() for ax in axes) == [
        "throughput (MB/s)", "throughput (events/s)"
    ]  # fmt: skip
    for ax in axes:
        unit = ax.get_ylabel().split("(")[1].rstrip(")")
        shown = {
            line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")
        }
        expected = set(rows_frame[rows_frame["unit"] == unit]["label"])
        assert shown == expected
    listed = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "history", "list", "--runs", "--db", db],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert "events/s" in listed.stdout and "MB/s" in listed.stdout
    # Figures as the tables show them: no exponent notation, no NaN.
    assert "e+0" not in listed.stdout and "NaN" not in listed.stdout


def test_a_group_the_workload_does_not_use_is_refused_before_any_job(tmp_path, conf) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(conf), "workload=sysbench_cpu", "model=efficientnet_b0",
        "batch_size=1000,2000", f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "workload 'sysbench_cpu' does not use model" in proc.stderr
    assert "Traceback" not in proc.stderr and not sweep.exists()
    # The dry run shows the command as it will run.
    proc = run_sweeper(
        "--config-dir", str(conf), "workload=sysbench_cpu", "batch_size=1000", "dry_run=true",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "sysbench", "cpu", "run", "--cpu-max-prime=1000", "--time=3", "--threads=1",
        "--report-interval=1",
    ]  # fmt: skip
