"""Regression detection on series with known changes (sweeper/history/detect.py): noise
alone is quiet, a lasting step is one finding from where it began, a one-run dip that came
back is not reported, direction matters, batch sizes that moved together are one finding,
and a status flip is a regression."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pandas as pd

from sweeper.history.detect import findings
from sweeper.history.settings import HistorySettings

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def history(
    levels: dict[int, list[float]],
    noise: float = 0.02,
    own: float = 0.01,
    seed: int = 0,
    statuses: dict[int, list[str]] | None = None,
    metric: str = "throughput",
    annotations: list[dict] | None = None,
) -> pd.DataFrame:
    """Runs of one configuration: levels[b][i] is batch size b's true value in sweep i;
    each run is off by up to `noise` and has its own interval of +-`own`."""
    rng = random.Random(seed)
    rows = []
    for b, values in levels.items():
        for i, value in enumerate(values):
            status = (statuses or {}).get(b, ["ok"] * len(values))[i]
            measured = value * (1 + rng.gauss(0, noise / 2))
            rows.append(
                {
                    "key": f"{b}-{i}",
                    "started_at": pd.Timestamp(START + timedelta(hours=i, seconds=b)),
                    "sweep": f"sweeps/{i}",
                    "workload": "builtin",
                    "model": "resnet50",
                    "system": "cpu",
                    "mode": "infer",
                    "data": "synthetic",
                    "precision": "fp32",
                    "batch_size": b,
                    "instances": 1,
                    "flags": "{}",
                    "environment": json.dumps({"cpu_model": "x"}),
                    "annotations": json.dumps((annotations or [{}] * len(values))[i]),
                    "status": status,
                    "reason": None if status == "ok" else "out of memory",
                    "metric": metric if status == "ok" else None,
                    "mean": measured if status == "ok" else None,
                    "ci95_low": measured * (1 - own) if status == "ok" else None,
                    "ci95_high": measured * (1 + own) if status == "ok" else None,
                }
            )
    return pd.DataFrame(rows)


SETTINGS = HistorySettings()


def test_noise_alone_is_quiet() -> None:
    """100 histories of five batch sizes, 12 runs each, 2% run-to-run noise (a 5% change is
    2.5 standard deviations): false alarms in about alpha (1%) of them, as designed."""
    levels = {b: [1000.0 * b] * 12 for b in (1, 4, 16, 32, 64)}
    alarms = [
        seed
        for seed in range(100)
        if findings(history(levels, noise=0.04, seed=seed), SETTINGS, improvements=True)
    ]
    assert len(alarms) <= 3, alarms


def test_a_lasting_step_is_one_finding_with_its_batch_sizes() -> None:
    steady = [1000.0] * 10
    stepped = [1000.0] * 6 + [850.0] * 4  # -15% from sweep 6 on
    frame = history({1: steady, 16: stepped, 32: stepped, 64: steady})
    [finding] = findings(frame, SETTINGS)
    assert finding.kind == "regression" and finding.metric == "throughput"
    assert finding.batch_sizes == [16, 32]
    assert finding.since_sweep == "sweeps/6"
    assert -20 < finding.change_pct < -10
    assert finding.before > finding.after
    assert finding.p_value is not None and finding.p_value < SETTINGS.alpha


def test_a_one_run_dip_that_came_back_is_not_reported() -> None:
    dipped = [1000.0] * 5 + [600.0] + [1000.0] * 4
    assert findings(history({8: dipped, 16: dipped}), SETTINGS, improvements=True) == []


def test_a_dip_inside_a_step_does_not_hide_the_step() -> None:
    series = [1000.0] * 6 + [800.0] * 2 + [500.0] + [800.0] * 3
    [finding] = findings(history({8: series}), SETTINGS)
    assert finding.since_sweep == "sweeps/6" and -25 < finding.change_pct < -15


def test_the_newest_run_alone_is_reported_when_it_stands_out() -> None:
    [finding] = findings(history({8: [1000.0] * 9 + [700.0]}), SETTINGS)
    assert finding.since_sweep == "sweeps/9"


def test_direction_higher_throughput_and_lower_latency_are_improvements() -> None:
    faster = [1000.0] * 6 + [1200.0] * 4
    assert findings(history({8: faster}), SETTINGS) == []
    [better] = findings(history({8: faster}), SETTINGS, improvements=True)
    assert better.kind == "improvement" and better.change_pct > 15
    slower_latency = [10.0] * 6 + [12.0] * 4
    [worse] = findings(history({8: slower_latency}, metric="latency_ms"), SETTINGS)
    assert worse.kind == "regression" and worse.metric == "latency_ms"


def test_a_change_below_the_threshold_is_not_reported_however_significant() -> None:
    series = [1000.0] * 10 + [970.0] * 10  # -3%, measured very precisely
    assert findings(history({8: series}, noise=0.001, own=0.001), SETTINGS) == []
    assert findings(history({8: series}, noise=0.001, own=0.001), HistorySettings(threshold=0.02))


def test_the_spread_between_runs_widens_what_counts_as_noise() -> None:
    """Runs whose own intervals are tight but that wander 20% between runs: a 10% move of
    the newest run is within what this series does."""
    rng = random.Random(3)
    wandering = [1000.0 * (1 + rng.uniform(-0.2, 0.2)) for _ in range(15)] + [900.0]
    assert findings(history({8: wandering}, noise=0.0, own=0.005), SETTINGS) == []


def test_many_series_tested_at_once_are_corrected_for() -> None:
    """100 batch sizes of pure noise with tight own intervals: no finding."""
    levels = {b: [1000.0] * 8 for b in range(1, 101)}
    assert findings(history(levels, noise=0.03, seed=7), SETTINGS, improvements=True) == []


def test_a_status_flip_is_a_regression_while_it_lasts() -> None:
    ok = ["ok"] * 6
    frame = history(
        {16: [1000.0] * 6, 32: [900.0] * 6},
        statuses={16: ok, 32: ["ok"] * 4 + ["oom", "oom"]},
    )
    [flip] = findings(frame, SETTINGS)
    assert (flip.metric, flip.before, flip.after, flip.batch_sizes) == ("status", "ok", "oom", [32])
    assert flip.since_sweep == "sweeps/4" and "out of memory" in flip.evidence
    healed = history({32: [900.0] * 6}, statuses={32: ["ok"] * 4 + ["oom", "ok"]})
    assert findings(healed, SETTINGS) == []


def test_what_changed_in_the_environment_where_the_step_began() -> None:
    notes = [{"versions": {"torch": "2.13"}}] * 6 + [{"versions": {"torch": "2.14"}}] * 4
    frame = history({8: [1000.0] * 6 + [800.0] * 4}, annotations=notes)
    [finding] = findings(frame, SETTINGS)
    assert finding.changed_at_since == {"versions.torch": ["2.13", "2.14"]}


def test_since_keeps_only_changes_that_began_within_it() -> None:
    frame = history({8: [1000.0] * 6 + [800.0] * 4})
    assert findings(frame, SETTINGS, since=START + timedelta(hours=5))
    assert findings(frame, SETTINGS, since=START + timedelta(hours=7)) == []
