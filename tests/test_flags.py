"""Any flag of the rendered command, set or swept from the command line: `flags.<name>=`."""

from __future__ import annotations

import shlex
import subprocess
import sys

from tests.conftest import launched, read_csv_rows, run_sweeper

INFER = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]
SEED_LINE = (
    "python3 validation.py --model resnet --model-size 50 --dataset imagenet --batch-size 1 "
    "--synthetic-data --repeat 10 --batch-norm --enable-half-partials"
)


def dry_lines(tmp_path, env, *overrides: str) -> list[list[str]]:
    proc = run_sweeper("-m", *INFER, *overrides, "dry_run=true", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.strip().splitlines()]


def test_a_flag_is_set_in_place_added_or_removed(tmp_path, standin_env) -> None:
    (plain,) = dry_lines(tmp_path, standin_env, "batch_size=1")
    assert plain == shlex.split(SEED_LINE)  # nothing overridden: the seed's line exactly
    (line,) = dry_lines(
        tmp_path,
        standin_env,
        "batch_size=1",
        "flags.repeat=20",
        "flags.batch-norm=null",
        "flags.available-memory-proportion=0.2",
    )
    expected = shlex.split(SEED_LINE.replace("--repeat 10", "--repeat 20"))
    expected.remove("--batch-norm")
    assert line == [*expected, "--available-memory-proportion", "0.2"]


def test_a_flag_swept_with_batch_size_is_a_column(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    lines = dry_lines(
        tmp_path, standin_env, "flags.available-memory-proportion=0.15,0.3", "batch_size=1,4"
    )
    got = sorted(
        (
            line[line.index("--batch-size") + 1],
            line[line.index("--available-memory-proportion") + 1],
        )
        for line in lines
    )
    assert got == [("1", "0.15"), ("1", "0.3"), ("4", "0.15"), ("4", "0.3")]
    proc = run_sweeper(
        "-m",
        *INFER,
        "flags.available-memory-proportion=0.15,0.3",
        "batch_size=1,4",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(launched(tmp_path / "runs.log")) == 4
    rows = read_csv_rows(sweep / "results.csv")
    assert sorted((r["batch_size"], r["flag.available-memory-proportion"]) for r in rows) == got
    assert all(r["status"] == "ok" for r in rows)
    summary = (sweep / "summary.md").read_text()
    assert "flag.available-memory-proportion=0.15" in summary
    assert "flag.available-memory-proportion=0.3" in summary

    # Comparisons and references tell the swept values apart.
    same = collect("compare", str(sweep), str(sweep / "results.csv"))
    assert same.returncode == 0, same.stderr
    assert same.stdout.count("same") == 4
    refs = tmp_path / "refs.yaml"
    refs.write_text("- {batch_size: 4, flag.available-memory-proportion: 0.3, throughput: 800}\n")
    assert collect("compare", "--reference", str(refs), str(sweep)).returncode == 0
    refs.write_text("- {batch_size: 4, throughput: 800}\n")
    ambiguous = collect("compare", "--reference", str(refs), str(sweep))
    assert ambiguous.returncode == 2
    assert "give flag.available-memory-proportion to choose one" in ambiguous.stderr


def collect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.collect", *args], capture_output=True, text=True
    )


def test_a_flag_reaches_the_builtin_workload_too(tmp_path) -> None:
    proc = run_sweeper("model=efficientnet_b0", "flags.threads=1", "dry_run=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout.strip().splitlines()[-1])
    assert argv.count("--threads") == 1 and argv[argv.index("--threads") + 1] == "1"
