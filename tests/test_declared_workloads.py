"""Benchmark programs declared as data in a user's own config directory (README:
"Workloads"): swept through the CLI like the built-in workload, checked before any job
starts, their figures read from their output or from a results file they write.

The two programs are small real programs written by the tests: a load generator printing
per-window lines in a format of its own, and a benchmark that writes a JSON results file and
prints nothing useful. Their figures follow from their arguments, so every number is exact.
"""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path

import pytest

from tests.conftest import read_csv_rows, run_sweeper

LOADGEN = '''#!/usr/bin/env python3
"""A load generator with a log format of its own: one line per window."""
import argparse, pathlib
p = argparse.ArgumentParser()
p.add_argument("--concurrency", type=int, required=True)
p.add_argument("--windows", type=int, default=5)
p.add_argument("--warm", action="store_true")
a = p.parse_args()
pathlib.Path("loadgen-ran").write_text("yes")  # in its working directory: the job's
if a.concurrency > 16:
    print("loadgen: error: ran out of arena memory (requested %d slots)" % a.concurrency)
    raise SystemExit(3)
print("loadgen 2.1 starting, warm=%s" % a.warm)
for w in range(a.windows):
    rate = 100.0 * a.concurrency + 10 * w
    print("[loadgen] window %d: %.1f req/s p50=%.2fms" % (w, rate, 1000.0 * a.concurrency / rate))
'''

RESULTS_WRITER = '''"""A benchmark that writes its figures to a JSON file and prints only noise."""
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, required=True)
p.add_argument("--rounds", type=int, default=4)
p.add_argument("--output", required=True)
a = p.parse_args()
rounds = [50.0 * a.batch + r for r in range(a.rounds)]
print("1 2 3 4 5 throughput? see the file")
with open(a.output, "w") as f:
    json.dump({"summary": {"throughput": {"per_round": rounds, "mean": sum(rounds) / len(rounds)},
                           "latency": {"p50_ms": 2.5}}}, f)
'''


def loadgen_yaml(program: Path) -> str:
    return f"""\
name: loadgen
command:
  program: {program}
  args:
    --concurrency: ${{batch_size}}
    --windows: ${{workload.params.windows}}
    --warm: false
params:
  windows: 5
metrics:
  formats:
    loadgen:
      throughput: 'window \\d+: (?P<value>[\\d.]+) req/s'
      latency_ms: 'p50=(?P<value>[\\d.]+)ms'
  unit: req/s
  drop_first: 1
oom_patterns:
  - 'ran out of arena memory'
"""


def results_writer_yaml(script: Path) -> str:
    return f"""\
name: results_writer
command:
  program: python3
  positional: [{script}]
  args:
    --batch: ${{batch_size}}
    --rounds: 4
    --output: figures.json
metrics:
  file:
    path: figures.json
    throughput: summary.throughput.per_round
    latency_ms: summary.latency.p50_ms
  drop_first: 0
"""


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """A user's own config directory with two workload declarations."""
    conf = tmp_path / "my-conf"
    (conf / "workload").mkdir(parents=True)
    loadgen = tmp_path / "bin" / "loadgen"
    loadgen.parent.mkdir()
    loadgen.write_text(LOADGEN)
    loadgen.chmod(loadgen.stat().st_mode | stat.S_IXUSR)
    writer = tmp_path / "bin" / "results_writer.py"
    writer.write_text(RESULTS_WRITER)
    (conf / "workload" / "loadgen.yaml").write_text(loadgen_yaml(loadgen))
    (conf / "workload" / "results_writer.yaml").write_text(results_writer_yaml(writer))
    return conf


def loadgen_mean(concurrency: int, windows: int = 5) -> float:
    kept = [100.0 * concurrency + 10 * w for w in range(1, windows)]  # the first dropped
    return sum(kept) / len(kept)


def test_a_program_with_its_own_log_format_is_swept_over_batch_sizes(tmp_path, user_conf) -> None:
    program = tmp_path / "bin" / "loadgen"
    dry = run_sweeper(
        "--config-dir", str(user_conf), "workload=loadgen", "batch_size=2,8", "dry_run=true",
        "-m", cwd=tmp_path,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    commands = [shlex.split(line) for line in dry.stdout.splitlines() if line.startswith("/")]
    assert commands == [
        [str(program), "--concurrency", str(b), "--windows", "5"] for b in (2, 8)
    ]  # --warm: false leaves the flag out

    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(user_conf), "workload=loadgen", "batch_size=2,8",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["workload"], r["batch_size"], r["status"]) for r in rows] == [
        ("loadgen", "2", "ok"),
        ("loadgen", "8", "ok"),
    ]
    for row, concurrency in zip(rows, (2, 8), strict=True):
        assert float(row["throughput"]) == pytest.approx(loadgen_mean(concurrency))
        assert row["throughput_n"] == "4"
    result = json.loads((sweep / "1" / "result.json").read_text())
    assert result["argv"] == [str(program), "--concurrency", "8", "--windows", "5"]
    assert result["format"] == "loadgen"
    assert result["latency_ms"]["mean"] == pytest.approx(
        sum(round(8000.0 / (800 + 10 * w), 2) for w in range(1, 5)) / 4
    )
    # The program ran in its job directory: its own files land beside its logs.
    assert (sweep / "1" / "loadgen-ran").exists()


def test_a_program_writing_a_json_results_file(tmp_path, user_conf) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        f"hydra.searchpath=[file://{user_conf}]", "workload=results_writer", "batch_size=1,4",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["workload"], r["batch_size"], r["status"]) for r in rows] == [
        ("results_writer", "1", "ok"),
        ("results_writer", "4", "ok"),
    ]
    for row, batch in zip(rows, (1, 4), strict=True):
        assert float(row["throughput"]) == pytest.approx(50.0 * batch + 1.5)
        assert row["throughput_n"] == "4"  # drop_first: 0 keeps every round
        assert float(row["latency_ms"]) == 2.5
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["per_instance"]["0"]["throughput"] == [50.0, 51.0, 52.0, 53.0]
    assert (sweep / "0" / "figures.json").exists()


def test_one_summary_figure_gives_n_1_and_no_interval(tmp_path, user_conf) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(user_conf), "workload=results_writer", "batch_size=2",
        "workload.metrics.file.throughput=summary.throughput.mean",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "ok" and result["unstable"] is False
    stats = result["throughput"]
    assert stats["n"] == 1 and stats["mean"] == 101.5
    assert stats["ci95_low"] is None and stats["ci95_high"] is None  # null: NaN is not JSON
    assert result["reason"] is None


def test_a_key_path_not_in_the_file_is_no_metrics_with_the_reason(tmp_path, user_conf) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(user_conf), "workload=results_writer", "batch_size=2",
        "workload.metrics.file.throughput=summary.throughput.median",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "no-metrics"
    assert "key path 'summary.throughput.median' is not in" in result["reason"]
    assert "it has: per_round, mean" in result["reason"]


def test_a_failure_matching_an_oom_pattern_is_oom(tmp_path, user_conf) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(user_conf), "workload=loadgen", "batch_size=16,32",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["batch_size"], r["status"]) for r in rows] == [("16", "ok"), ("32", "oom")]
    assert rows[1]["reason"] == (
        "out of memory: loadgen: error: ran out of arena memory (requested 32 slots)"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "workload.metrics.formats.loadgen.throughput='(\\d+) req/s'",
            "workload 'loadgen' (workload/loadgen.yaml): metrics.formats.loadgen: metric "
            "format 'loadgen': regex '(\\\\d+) req/s' needs exactly one group, named value",
        ),
        (
            "workload.command.program=no-such-loadgen",
            "workload 'loadgen' (workload/loadgen.yaml): command.program 'no-such-loadgen' is "
            "not on PATH",
        ),
        (
            "workload.requires.files=[/nowhere/model.onnx]",
            "requires.files[0]: /nowhere/model.onnx does not exist",
        ),
        (
            "workload.requires.env_vars=[LOADGEN_LICENSE]",
            "requires.env_vars[0]: $LOADGEN_LICENSE is not set (export LOADGEN_LICENSE=...)",
        ),
        (
            "workload.requires.executables=[no-such-helper]",
            "requires.executables[0]: 'no-such-helper' not found on PATH",
        ),
        ("workload.fork_server=true", "fork_server=true: only the built-in workload"),
    ],
)
def test_a_bad_declaration_is_refused_before_any_job(
    tmp_path, user_conf, override: str, message: str
) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(user_conf), "workload=loadgen", "batch_size=2,4", override,
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path, env={"LOADGEN_LICENSE": None},
    )  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(sweep.glob("*/loadgen-ran"))  # no job ran


def test_an_unknown_key_in_a_declaration_file_names_the_file_and_key(tmp_path, user_conf) -> None:
    path = user_conf / "workload" / "loadgen.yaml"
    path.write_text(path.read_text().replace("oom_patterns:", "oom_paterns:"))
    proc = run_sweeper("--config-dir", str(user_conf), "workload=loadgen", cwd=tmp_path)
    assert proc.returncode == 2
    assert "In 'workload/loadgen'" in proc.stderr
    assert "Key 'oom_paterns' not in 'WorkloadConfig'" in proc.stderr
