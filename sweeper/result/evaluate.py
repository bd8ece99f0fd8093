"""Judging one run: a status with its reason, and the seed's statistics."""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from typing import Any

from sweeper.parse.logparse import ParsedLog
from sweeper.result.model import Status
from sweeper.result.stats import Summary, combine_instances, steady_state_problem, summarize


@dataclass(frozen=True)
class MetricRules:
    """How a workload's values become one figure (conf/workload/*.yaml, `metrics`)."""

    drop_first: int = 1
    combine: str = "mean"
    unstable_cv: float = 0.10
    target_rel_ci: float | None = None  # a wider 95% interval (relative to the mean): wide


@dataclass
class Evaluation:
    status: Status
    reason: str | None = None
    throughput: Summary | None = None
    latency_ms: Summary | None = None
    unstable: bool = False  # a figure not to be trusted (noise, no steady state)
    wide: bool = False  # a figure less precise than asked (its interval wider than the target)
    instances_reporting: int = 0
    format: str | None = None
    per_instance: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    # How the instances' values became the series the statistics describe.
    combined: dict[str, Any] | None = None
    # How long it measured and why it stopped, and how tight the interval is.
    measurement: dict[str, Any] | None = None
    # Why the measured values show no steady state (a trend, a level shift), if they do not.
    steady_state_problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "instances_reporting": self.instances_reporting,
            "format": self.format,
            "throughput": self.throughput.to_dict() if self.throughput else None,
            "latency_ms": self.latency_ms.to_dict() if self.latency_ms else None,
            "unstable": self.unstable,
            "wide": self.wide,
            "combined": self.combined,
            "measurement": self.measurement,
            "per_instance": {str(k): v for k, v in sorted(self.per_instance.items())},
        }


def _non_finite(per_instance: dict[int, list[float]]) -> str | None:
    for rank in sorted(per_instance):
        values = per_instance[rank]
        if all(map(math.isfinite, values)):  # the common case, checked in C
            continue
        for i, value in enumerate(values):
            if not math.isfinite(value):
                return f"instance {rank} value {i + 1} is {value}"
    return None


def evaluate(
    parsed: ParsedLog,
    rules: MetricRules,
    *,
    exit_code: int | None = 0,
    timed_out: bool = False,
    timeout_s: float | None = None,
    failure_detail: str | None = None,
    expected_instances: int | None = None,
) -> Evaluation:
    """The run's status: timeout, then failed, then no-metrics, then invalid, else ok."""
    per_instance: dict[int, dict[str, list[float]]] = {}
    for rank, values in parsed.throughput.items():
        per_instance.setdefault(rank, {})["throughput"] = values
    for rank, values in parsed.latency_ms.items():
        per_instance.setdefault(rank, {})["latency_ms"] = values
    result = Evaluation(
        status=Status.OK,
        instances_reporting=len(parsed.throughput),
        format=parsed.format,
        per_instance=per_instance,
    )
    if timed_out:
        result.status = Status.TIMEOUT
        result.reason = f"killed after the {timeout_s:g} s time limit (timeout_s)"
    elif exit_code not in (0, None):
        result.status = Status.FAILED
        result.reason = _exit_description(exit_code) + (
            f": {failure_detail}" if failure_detail else ""
        )
    if result.status != Status.OK:
        _add_statistics(result, parsed, rules)
        return result

    if not parsed.throughput:
        result.status = Status.NO_METRICS
        result.reason = "no throughput value found in the log"
        return result
    if expected_instances and len(parsed.throughput) < expected_instances:
        missing = sorted(set(range(expected_instances)) - set(parsed.throughput))
        result.status = Status.NO_METRICS
        result.reason = f"no throughput value from instance(s) {missing}"
        return result
    bad = _non_finite(parsed.throughput) or _non_finite(parsed.latency_ms)
    if bad:
        result.status = Status.INVALID
        result.reason = f"non-finite value: {bad}"
        return result
    _add_statistics(result, parsed, rules)
    if result.throughput is None:
        total = sum(len(v) for v in parsed.throughput.values())
        result.status = Status.NO_METRICS
        result.reason = (
            f"{total} throughput value(s) found, none left after dropping the first "
            f"{rules.drop_first} of each instance"
        )
    else:
        result.reason = precision_reason(
            _unstable_reasons(result, rules), _wide_reason(result, rules, parsed)
        )
    return result


def precision_reason(unstable: list[str], wide: str | None) -> str | None:
    """An ok result's reason: why its figure is unstable (not to be trusted), then why it is
    wide (less precise than asked), each named once."""
    parts = (["unstable: " + "; ".join(unstable)] if unstable else []) + (
        [f"wide: {wide}"] if wide else []
    )
    return "; ".join(parts) or None


def _relative_half_width(stats: Summary) -> float | None:
    rel = stats.rel_half_width
    return rel if math.isfinite(rel) else None


def _unstable_reasons(result: Evaluation, rules: MetricRules) -> list[str]:
    """Why the figure is not to be trusted: values too noisy, or no steady state."""
    stats = result.throughput
    assert stats is not None
    reasons = []
    if stats.n > 1 and stats.cv > rules.unstable_cv:
        reasons.append(f"coefficient of variation {stats.cv:.1%} > {rules.unstable_cv:.0%}")
    if result.steady_state_problem:
        reasons.append(result.steady_state_problem)
    return reasons


def _wide_reason(result: Evaluation, rules: MetricRules, parsed: ParsedLog) -> str | None:
    """Why the figure is less precise than asked: its interval is wider than the target,
    or measuring ran out of time. A milder mark than unstable: the interval says how much."""
    stats = result.throughput
    assert stats is not None
    rel = _relative_half_width(stats)
    budget = parsed.stopped == "budget"
    if rules.target_rel_ci is not None and rel is not None and rel > rules.target_rel_ci:
        within = " within the time budget (workload.max_seconds)" if budget else ""
        return (
            f"95% interval ±{rel:.1%} of the mean did not reach the target "
            f"±{rules.target_rel_ci:.1%}{within}"
        )
    if budget:
        return "measuring stopped at its time budget (workload.max_seconds)"
    return None


def _exit_description(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"


def _add_statistics(result: Evaluation, parsed: ParsedLog, rules: MetricRules) -> None:
    """Statistics of whatever values there are (also kept for failed runs, for diagnosis)."""
    series, dropped = combine_instances(parsed.throughput, rules.drop_first, rules.combine)
    if series:
        result.combined = {
            "rule": rules.combine,
            "instances": len(parsed.throughput),
            # The window: the iterations every instance reached, after the dropped ones.
            "iterations": [dropped + 1, dropped + len(series)],
        }
    if series and all(map(math.isfinite, series)):
        result.throughput = summarize(series, dropped)
        result.steady_state_problem = steady_state_problem(series, result.throughput)
        result.measurement = {
            "intervals": max(len(v) for v in parsed.throughput.values()),
            "stopped": parsed.stopped,
            "rel_ci95": _relative_half_width(result.throughput),
            "target_rel_ci": rules.target_rel_ci,
        }
        result.unstable = bool(_unstable_reasons(result, rules))
        result.wide = _wide_reason(result, rules, parsed) is not None
    # Latency is per batch on each instance: averaged, never summed.
    lat_series, lat_dropped = combine_instances(parsed.latency_ms, rules.drop_first, "mean")
    if lat_series and all(math.isfinite(v) for v in lat_series):
        result.latency_ms = summarize(lat_series, lat_dropped)
