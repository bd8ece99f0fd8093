"""How long the built-in workload measures: warm-up until the step time settles, intervals
of a fixed count of steps or of `interval_s` seconds, and, with a target, measuring until the
95% interval of the mean is within `target_rel_ci` of it (or `max_seconds` is spent).

The interval is the collector's: the first `drop_first` values of the instance dropped, the
interval that allows for autocorrelation over the rest (sweeper/result/stats.py); the
target is never met before that interval can be made (MIN_VALUES_FOR_AUTOCORRELATION).
Instances agree on every decision (the end of a warm-up, of an interval, of the
measurement) through the process group, so a DDP step never waits for an instance that has
stopped.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sweeper.result.stats import MIN_VALUES_FOR_AUTOCORRELATION, summarize
from sweeper.workload.settings import MeasureSettings

SETTLED = 0.10  # two consecutive warm-up steps this close in time: the rate has settled
TARGET, BUDGET, COUNT = "target", "budget", "count"  # why measuring stopped


_DEFAULTS = MeasureSettings()


@dataclass(frozen=True)
class Plan:
    """How long to measure; defaults as declared (sweeper/workload/settings.py)."""

    intervals: int = _DEFAULTS.intervals  # the fixed count, when there is no target
    steps_per_interval: int = _DEFAULTS.steps_per_interval  # when interval_s is not given
    interval_s: float | None = _DEFAULTS.interval_s
    target_rel_ci: float | None = _DEFAULTS.target_rel_ci
    min_intervals: int = _DEFAULTS.min_intervals
    max_seconds: float = _DEFAULTS.max_seconds
    drop_first: int = 1
    warmup_max_s: float = _DEFAULTS.warmup_max_s  # 0: no settling beyond warmup_steps


def relative_half_width(rates: list[float], drop_first: int) -> float:
    """The 95% interval's half-width relative to the mean, as the collector computes it
    (sweeper/result/stats.py); inf while there are too few values to tell how correlated
    they are, so the target is never met on a t-interval that may be too narrow."""
    kept = rates[drop_first:]
    if len(kept) < MIN_VALUES_FOR_AUTOCORRELATION or statistics.fmean(kept) <= 0:
        return math.inf
    return summarize(kept, drop_first).rel_half_width


def agree(flag: bool, distributed: bool, every: bool) -> bool:
    """The instances' common decision: every=True all of them, else any of them."""
    if not distributed:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MIN if every else dist.ReduceOp.MAX)
    return bool(value.item())


def settle(
    step: Callable[[], object], sync: Callable[[], None], plan: Plan, distributed: bool
) -> int:
    """Warm-up steps until two consecutive ones take the same time (within SETTLED), at most
    plan.warmup_max_s; returns how many ran."""
    if plan.warmup_max_s <= 0:
        return 0
    start, last, steps = time.perf_counter(), None, 0
    while True:
        began = time.perf_counter()
        step()
        sync()
        took = time.perf_counter() - began
        steps += 1
        settled = last is not None and abs(took - last) <= SETTLED * last
        spent = time.perf_counter() - start >= plan.warmup_max_s
        if agree(settled or spent, distributed, every=True):
            return steps
        last = took


def run_interval(
    step: Callable[[], float],
    plain_step: Callable[[], object],
    sync: Callable[[], None],
    plan: Plan,
    distributed: bool,
) -> tuple[int, float, float]:
    """One interval: (steps, seconds, the last step's loss). plain_step skips reading the
    loss (a device sync): used for all but an interval's last step where time allows."""
    start = time.perf_counter()
    if plan.interval_s is None:
        for _ in range(plan.steps_per_interval - 1):
            plain_step()
        loss = step()
        sync()
        return plan.steps_per_interval, time.perf_counter() - start, loss
    steps = 0
    while True:
        loss = step()
        sync()
        steps += 1
        done = time.perf_counter() - start >= plan.interval_s
        if agree(done, distributed, every=False):
            return steps, time.perf_counter() - start, loss


def stop_reason(
    rates: list[float], interval: int, measuring_s: float, plan: Plan, distributed: bool
) -> str | None:
    """Why measuring stops after this interval, or None to go on."""
    if plan.target_rel_ci is None:
        return COUNT if interval >= plan.intervals else None
    if interval < plan.min_intervals:  # never before: not even at the time budget
        return None
    met = relative_half_width(rates, plan.drop_first) <= plan.target_rel_ci
    spent = measuring_s >= plan.max_seconds
    if agree(met, distributed, every=True):
        return TARGET
    if agree(spent, distributed, every=False):
        return BUDGET
    return None
