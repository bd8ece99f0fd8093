"""95% intervals that cover what they claim when consecutive values are correlated
(sweeper/result/stats.py; README "What an interval means").

Series are AR(1) with a known mean: x_t = mean + rho (x_{t-1} - mean) + noise, stationary from
the first value, coefficient of variation 10%, 30 measured values after the dropped first.
The true half-width of the 95% interval of their mean follows from the AR(1) formula.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from sweeper.result.stats import (
    AR1_INTERVAL,
    T_INTERVAL,
    summarize,
    t95,
    variance_factor,
)
from sweeper.workload.measure import Plan, relative_half_width, stop_reason
from tests.conftest import declare_program, run_sweeper

MEAN, CV, MEASURED = 100.0, 0.10, 30
RHOS = (0.0, 0.3, 0.6, 0.8)
# End to end through real jobs: independent values and strongly correlated ones (every rho
# is simulated in-process above, where a run costs nothing).
SWEPT_RHOS = (0.0, 0.8)


def ar1(rho: float, n: int, rng: random.Random) -> list[float]:
    sd = CV * MEAN
    x = rng.gauss(0, sd)
    values = [MEAN + x]
    for _ in range(n - 1):
        x = rho * x + rng.gauss(0, sd * math.sqrt(1 - rho * rho))
        values.append(MEAN + x)
    return values


def true_half_width(rho: float, n: int) -> float:
    return 1.96 * CV * MEAN * math.sqrt(variance_factor(rho, n) / n)


@pytest.mark.parametrize("rho", RHOS)
def test_coverage_and_width_on_ar1_series(rho: float) -> None:
    rng = random.Random(2026 + int(rho * 10))
    series = [ar1(rho, MEASURED, rng) for _ in range(2000)]
    summaries = [summarize(values, dropped=1) for values in series]
    covered = sum(s.ci95_low <= MEAN <= s.ci95_high for s in summaries) / len(summaries)
    width = sum((s.ci95_high - s.ci95_low) / 2 for s in summaries) / len(summaries)
    assert covered >= 0.90, covered
    assert 1 / 1.5 <= width / true_half_width(rho, MEASURED) <= 1.5
    assert {s.interval for s in summaries} == {AR1_INTERVAL}


def test_a_plain_t_interval_is_what_fails_there() -> None:
    """The reason for all this: at rho = 0.6 the t-interval covers far less than 95%."""
    rng = random.Random(7)
    covered = 0
    for _ in range(1000):
        values = ar1(0.6, MEASURED, rng)
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        half = t95(len(values) - 1) * sd / math.sqrt(len(values))
        covered += abs(mean - MEAN) <= half
    assert covered / 1000 < 0.80


def test_few_values_get_the_t_interval_and_say_so() -> None:
    summary = summarize([10.0, 12.0, 14.0], dropped=1)
    assert summary.interval == T_INTERVAL and summary.lag1 is None and summary.n_eff == 3
    steady = summarize([100.0 + (i % 2) for i in range(20)], dropped=1)
    assert steady.interval == AR1_INTERVAL and steady.lag1 == 0.0  # alternating: no + lag


def test_the_stopping_rule_waits_for_the_honest_interval() -> None:
    """An autocorrelated series on which the naive interval reaches the target long before
    the honest one: the rule stops only once the honest interval is within it."""
    plan = Plan(target_rel_ci=0.03, min_intervals=5, max_seconds=1e9, drop_first=1)
    rng = random.Random(11)
    rates = [50.0, *ar1(0.8, 400, rng)]
    stopped_at = next(
        i for i in range(1, len(rates) + 1) if stop_reason(rates[:i], i, 0.0, plan, False)
    )
    kept = rates[1:stopped_at]
    naive = next(
        i
        for i in range(3, len(rates))
        if t95(i - 2) * _sd(rates[1:i]) / math.sqrt(i - 1) / _mean(rates[1:i]) <= 0.03
    )
    assert naive < stopped_at  # the t-interval would have stopped earlier
    assert relative_half_width(rates[:stopped_at], 1) <= 0.03
    assert summarize(kept, 1).rel_half_width <= 0.03
    # At that point the true half-width (rho known) is within a third of the target's.
    assert true_half_width(0.8, len(kept)) / MEAN <= 0.03 * 1.34


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _sd(values: list[float]) -> float:
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


AR1_PROGRAM = '''"""Prints an AR(1) series of per-iteration rates with a known mean."""
import argparse, math, random
p = argparse.ArgumentParser()
p.add_argument("--rho", type=float, required=True)
p.add_argument("--seed", type=int, required=True)
a = p.parse_args()
rng = random.Random(a.seed * 1000 + int(a.rho * 10))
x = rng.gauss(0, 10.0)
print("iteration 0: 30.0 widgets/s (warm-up)")
for i in range(30):
    print("iteration %d: %.6f widgets/s" % (i + 1, 100.0 + x))
    x = a.rho * x + rng.gauss(0, 10.0 * math.sqrt(1 - a.rho * a.rho))
'''


def test_a_declared_workloads_intervals_cover_its_known_mean(tmp_path: Path) -> None:
    """End to end: the figures in result.json, swept over rho and seeds."""
    declare_program(
        tmp_path / "conf", "ar1", AR1_PROGRAM, r"iteration \d+: (?P<value>[\d.]+) widgets/s",
        "widgets/s",
        args={"--rho": "${workload.params.rho}", "--seed": "${workload.params.seed}"},
        metrics={"drop_first": 1, "unstable_cv": 1.0}, params={"rho": 0.0, "seed": 0},
    )  # fmt: skip
    seeds = 60
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "--config-dir", str(tmp_path / "conf"), "workload=ar1", "history.enabled=false",
        f"workload.params.rho={','.join(map(str, SWEPT_RHOS))}",
        f"workload.params.seed=range(0,{seeds})", f"hydra.sweep.dir={sweep}", "-m",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(results) == seeds * len(SWEPT_RHOS)
    for rho in SWEPT_RHOS:
        mine = [r for r in results if f"--rho {rho}" in " ".join(r["argv"])]
        assert len(mine) == seeds
        stats = [r["throughput"] for r in mine]
        assert {(s["n"], s["interval"]) for s in stats} == {(MEASURED, AR1_INTERVAL)}
        covered = sum(s["ci95_low"] <= MEAN <= s["ci95_high"] for s in stats) / seeds
        width = sum((s["ci95_high"] - s["ci95_low"]) / 2 for s in stats) / seeds
        assert covered >= 0.90, (rho, covered)
        assert width / true_half_width(rho, MEASURED) <= 1.5, rho
