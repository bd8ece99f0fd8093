"""Statistics of a throughput series, and the seed's rule for combining instances.

The seed's figure: drop the first value of each instance, then average the rest. Whether
instances' values are averaged or summed is the workload's declaration: under poprun,
Graphcore's app prints the global estimate from every instance (mean); the built-in
workload prints each instance's own rate (sum). Either way instances are combined iteration
by iteration first, and the statistics are those of the combined series.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom; the normal beyond.
_T95 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
COMBINE_RULES = ("mean", "sum")


@dataclass(frozen=True)
class Summary:
    mean: float
    median: float
    std: float
    min: float
    max: float
    n: int
    dropped: int
    cv: float
    ci95_low: float
    ci95_high: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def t95(dof: int) -> float:
    if dof < 1:
        return math.nan
    return _T95[dof - 1] if dof <= len(_T95) else 1.96


def summarize(values: Sequence[float], dropped: int) -> Summary:
    """Statistics of the values kept; `dropped` is recorded as is."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = t95(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return Summary(
        mean=mean,
        median=statistics.median(values),
        std=std,
        min=min(values),
        max=max(values),
        n=n,
        dropped=dropped,
        cv=std / mean if mean else math.nan,
        ci95_low=mean - half,
        ci95_high=mean + half,
    )


def combine_instances(
    per_instance: Mapping[int, Sequence[float]], drop_first: int, rule: str
) -> tuple[list[float], int]:
    """Drops the first `drop_first` values of each instance, then combines the instances
    iteration by iteration, over the iterations every instance reached: one value per
    iteration, so that the statistics count measurements, not log lines.

    mean: the instances' values averaged (under poprun every instance prints the same global
    estimate: pooling them as independent values would narrow the interval by sqrt(N)).
    sum: the instances' own rates added (each reports its local throughput).
    Returns the combined series and how many iterations were dropped.
    """
    if rule not in COMBINE_RULES:
        raise ValueError(f"combine rule '{rule}': choose one of {', '.join(COMBINE_RULES)}")
    kept = {rank: list(values[drop_first:]) for rank, values in per_instance.items()}
    dropped = max((min(drop_first, len(values)) for values in per_instance.values()), default=0)
    if not kept:
        return [], dropped
    length = min(len(values) for values in kept.values())
    combined = [sum(kept[rank][i] for rank in kept) for i in range(length)]
    if rule == "mean":
        combined = [total / len(kept) for total in combined]
    return combined, dropped
