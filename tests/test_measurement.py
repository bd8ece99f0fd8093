"""Numbers to trust on a noisy machine: the built-in workload measures until its interval is
tight (or its time budget is spent, then the result says so); repeats run interleaved and
combine into one row; what stays unstable is marked wherever a figure is shown; jobs that
measured at the same time on one host are found."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweeper.collect import report
from sweeper.result.model import Result
from sweeper.sweep.order import repeat_order, with_repeats
from tests.conftest import launched, read_csv_rows, run_sweeper

# Tests whose verdict depends on the machine's noise (a quiet run reaching its target, a run
# made noisy on purpose) run alone (tests/machine_lock.py). The others share the machine:
# an unreachable target, instances agreeing, repeats and overlaps decide the same however
# busy it is.

# The eager model: TorchScript's profiling executor re-optimizes during the first seconds,
# a warm-up of its own that these tests of the measuring rule are not about.
TINY = ["model=efficientnet_b0", "mode=infer", "batch_size=1", "workload.optimize=none"]
# A target this machine reaches when quiet (its 0.5 s rates vary by 10-15% between intervals:
# a shared VM) and does not reach within 6 s when another process takes its cores in bursts.
TARGET = 0.15


def result_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "result.json").read_text())


@pytest.mark.alone
def test_a_quiet_run_stops_at_its_target(tmp_path) -> None:
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    args = [*TINY, f"workload.target_rel_ci={TARGET}", "workload.max_seconds=30",
            f"hydra.sweep.dir={sweep}", "-m"]  # fmt: skip
    proc = run_sweeper(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if result_of(sweep / "0")["unstable"]:
        # This shared VM stalls now and then (seen: one interval of twelve at 60% of the
        # others' rate, nothing else running): measured again, as a user would.
        proc = run_sweeper(*args, "resume=true", "rerun_unstable=true", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    result = result_of(sweep / "0")
    measured = result["measurement"]
    assert measured["stopped"] == "target" and measured["rel_ci95"] <= TARGET
    # Never before workload.min_intervals; stopped by the target, so before the 30 s budget
    # (how long it takes is the machine's noise: 38 of 0.5 s intervals were seen on a VM).
    assert measured["intervals"] >= 5
    assert result["status"] == "ok" and not result["unstable"]


def _competitor(stop_at: float) -> subprocess.Popen[bytes]:
    """Two processes that load both cores in bursts (0.7 s on, 0.7 s off) until stop_at."""
    code = (
        "import time\n"
        f"end = {stop_at}\n"
        "while time.time() < end:\n"
        "    busy = time.time() + 0.7\n"
        "    while time.time() < busy: pass\n"
        "    time.sleep(0.7)\n"
    )
    # A session of its own: both loaders are killed with it (killing bash alone left them
    # loading the cores until stop_at, under the tests that followed).
    return subprocess.Popen(
        ["bash", "-c", f"{sys.executable} -c '{code}' & {sys.executable} -c '{code}'; wait"],
        start_new_session=True,
    )


@pytest.mark.alone
def test_a_noisy_run_measures_to_its_budget_and_is_flagged_everywhere(tmp_path) -> None:
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    competitor = _competitor(time.time() + 60)
    try:
        proc = run_sweeper(
            *TINY, f"workload.target_rel_ci={TARGET}", "workload.max_seconds=6",
            f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
        )  # fmt: skip
    finally:
        os.killpg(competitor.pid, signal.SIGKILL)
        competitor.wait()
    assert proc.returncode == 0, proc.stderr  # a mark is a warning, not a failure
    result = result_of(sweep / "0")
    assert result["measurement"]["stopped"] == "budget"
    assert result["wide"] and result["status"] == "ok"
    assert "within the time budget (workload.max_seconds)" in result["reason"]
    # The terminal table, summary.md and the plot all say so: wide (the target not reached
    # in time), and unstable too when the competitor made the values that noisy.
    summary = (sweep / "summary.md").read_text()
    assert "workload.max_seconds" in summary
    if result["unstable"]:
        assert "ok, unstable, wide" in proc.stderr and "unstable job 0 (" in proc.stderr
        assert "**unstable**, wide" in summary and "## Unstable results" in summary
        frame = report.results_frame([Result.from_json(result)])
        fig = report.figure(frame)
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "unstable (summary.md says why)" in labels
    else:
        assert "ok, wide" in proc.stderr and "wide: 1 result(s)" in proc.stderr
        assert "| wide " in summary and "## Wide intervals" in summary


def test_rerun_unstable_with_resume_reruns_only_those(tmp_path) -> None:
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    # An unreachable target: every result ends at its (1 s) budget, wide.
    args = [*TINY, "workload.target_rel_ci=0.0001", "workload.max_seconds=1"]
    first = run_sweeper(*args, f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = result_of(sweep / "0")
    assert before["wide"]
    again = run_sweeper(*args, "resume=true", f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert result_of(sweep / "0") == before  # kept: resume alone reruns only failures
    assert not (sweep / "0" / "attempts").exists()
    rerun = run_sweeper(
        *args, "resume=true", "rerun_unstable=true", f"hydra.sweep.dir={sweep}", "-m",
        cwd=tmp_path,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert result_of(sweep / "0")["started_at"] >= before["started_at"]
    assert result_of(sweep / "0" / "attempts" / "1") == before  # the earlier one is kept


def test_rerun_unstable_needs_resume(tmp_path) -> None:
    proc = run_sweeper(*TINY, "rerun_unstable=true", "dry_run=true", "-m", cwd=tmp_path)
    assert proc.returncode == 2 and "give resume=true with it" in proc.stderr


def test_repeats_run_interleaved_and_combine_into_one_row(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0"}
    proc = run_sweeper(
        "system=ipu_m2000", "mode=infer", "data=synthetic", "batch_size=1,2", "repeats=3",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    order = [
        r["argv"][r["argv"].index("--batch-size") + 1] for r in launched(tmp_path / "runs.log")
    ]
    # Every configuration once per round (not A A A B B B): the first round in the sweep's
    # order, the later ones shuffled by the recorded seed (repeat_seed=0).
    assert order == [("1", "2")[k] for _, k in repeat_order(2, 3, 0)]
    assert order == ["1", "2", "2", "1", "1", "2"]
    # Each repeat keeps its own job directory and result.json...
    assert [result_of(sweep / str(n))["repeat"] for n in range(6)] == [0, 0, 1, 1, 2, 2]
    assert yaml.safe_load((sweep / "0" / ".hydra" / "config.yaml").read_text())["repeat_seed"] == 0
    # ...and results.csv has one row per configuration.
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["batch_size"], r["repeats"], r["status"]) for r in rows] == [
        ("1", "3", "ok"),
        ("2", "3", "ok"),
    ]
    per_repeat = [result_of(sweep / str(n))["throughput"] for n in (0, 3, 4)]  # batch size 1
    assert float(rows[0]["throughput"]) == pytest.approx(sum(s["mean"] for s in per_repeat) / 3)
    assert int(rows[0]["throughput_n"]) == sum(s["n"] for s in per_repeat)
    # The interval is at least what the spread between the repeats gives.
    assert float(rows[0]["throughput_ci95_low"]) <= min(s["mean"] for s in per_repeat)


def test_repeat_rounds_are_shuffled_by_a_seed() -> None:
    """Randomized interleaving: every round holds each job once, rounds differ in order
    (no configuration always follows the same one), and one seed gives one order."""
    order = repeat_order(5, 8, 0)
    rounds = [[k for r, k in order if r == n] for n in range(8)]
    assert all(sorted(r) == list(range(5)) for r in rounds)
    assert rounds[0] == [0, 1, 2, 3, 4]  # the sweep's own order first
    assert len({tuple(r) for r in rounds}) > 4
    assert repeat_order(5, 8, 0) == order and repeat_order(5, 8, 1) != order
    assert with_repeats([["a=1"], ["a=2"]], 1) == [["a=1"], ["a=2"]]


def test_a_failed_repeat_is_not_hidden(tmp_path, standin_env) -> None:
    """Batch size 3 makes the stand-in crash: every repeat fails, and the row says which."""
    sweep = tmp_path / "sweep"
    env = {**standin_env, "STANDIN_STEP_S": "0"}
    proc = run_sweeper(
        "system=ipu_m2000", "mode=infer", "data=synthetic", "batch_size=3", "repeats=2",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    [row] = read_csv_rows(sweep / "results.csv")
    assert row["status"] == "failed" and row["reason"].startswith("repeat 1 of 2: exit code 3")


def test_jobs_measured_at_once_on_one_host_are_flagged(tmp_path, standin_env) -> None:
    """Hydra's submitit_local starts every job at once: both results are flagged, with the
    other job and the fix named — alike in result.json, results.csv and the history."""
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0.3"}
    db = f"sqlite:///{tmp_path / 'history.db'}"
    for attempt in range(3):
        sweep = tmp_path / f"sweep{attempt}"
        proc = run_sweeper(
            "hydra/launcher=submitit_local", "system=ipu_m2000", "mode=infer", "data=synthetic",
            "batch_size=1,2", f"hydra.sweep.dir={sweep}", f"history.url={db}", "-m",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        # submitit's local controller may open its log before its parent made the job's
        # folder (a race in submitit, seen about once in ten): that launch is tried again.
        if "submitit/local/local.py" not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(sweep / "results.csv")
    assert [r["unstable"] for r in rows] == ["True", "True"]
    assert "measured while job 1 ran on the same host" in rows[0]["reason"]
    assert "hydra/launcher=local" in rows[0]["reason"]
    for row in rows:  # the verdict is result.json's, read by the report
        on_disk = json.loads((Path(row["job_dir"]) / "result.json").read_text())
        assert on_disk["unstable"] is True and on_disk["reason"] == row["reason"]
    listed = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "history", "list", "--runs", "--db", db],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    runs = [line for line in listed.stdout.splitlines()[1:] if "throughput" in line]
    assert len(runs) == 2, listed.stdout + listed.stderr
    for row in rows:
        assert [" True " in line for line in runs if line.rstrip().endswith(row["reason"])] == [
            True
        ]
    # One after another (the default launcher): nothing flagged.
    alone = tmp_path / "alone"
    proc = run_sweeper(
        "system=ipu_m2000", "mode=infer", "data=synthetic", "batch_size=1,2",
        f"hydra.sweep.dir={alone}", "-m", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert [r["unstable"] for r in read_csv_rows(alone / "results.csv")] == ["False", "False"]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux")
def test_repeats_with_the_batch_search_combine_per_probe(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    env = {
        **standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0", "STANDIN_PEAK": "8",
        "STANDIN_OOM_ABOVE": "12",
    }  # fmt: skip
    proc = run_sweeper(
        "hydra/sweeper=batch_search", "system=ipu_m2000", "mode=infer", "data=synthetic",
        "hydra.sweeper.max=16", "repeats=2", f"hydra.sweep.dir={sweep}", "-m",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [cell] = json.loads((sweep / "search.json").read_text())
    assert cell["max_fit"] == {"batch_size": 12, "first_oom": 13}
    assert cell["peak"]["batch_size"] == 8
    # Every probe ran twice (its repeats), and counts once in the search.
    assert len(launched(tmp_path / "runs.log")) == 2 * cell["jobs"]


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_instances_agree_on_when_to_stop(tmp_path, mode: str) -> None:
    """Two torchrun instances (DDP when training) measure the same intervals and stop
    together, whichever reaches the target or the budget first."""
    pytest.importorskip("torchvision")
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        *TINY[:1], f"mode={mode}", "batch_size=2", "system.instances=2",
        f"workload.target_rel_ci={TARGET}", "workload.max_seconds=4",
        f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    stops = []
    for rank in (0, 1):
        log = (sweep / "0" / f"instance-{rank}.log").read_text()
        stops += [line.split("measuring stopped ")[1].split(":")[0] for line in log.splitlines()
                  if "measuring stopped" in line]  # fmt: skip
    assert len(stops) == 2 and stops[0] == stops[1]  # e.g. "(budget) after 9 intervals"
    result = result_of(sweep / "0")
    assert result["combined"]["instances"] == 2
    assert f"after {result['measurement']['intervals']} intervals" in stops[0]
