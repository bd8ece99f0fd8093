"""A configuration run several times (`repeats=N`, interleaved across the sweep): its
repeats become one result. Each repeat keeps its own job directory and result.json; the
tables show one row per configuration, with a `repeats` column.

The combined figure is the mean of the repeats' means; its 95% interval is the wider of the
interval from the spread between the repeats (t over their means) and the one their own
intervals give together, so the spread between repeats always counts in it.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from sweeper.result import efficiency
from sweeper.result.evaluate import precision_reason
from sweeper.result.model import Result
from sweeper.result.stats import t95

BETWEEN_CV = 0.10  # repeats' means spread more than this: the result is unstable


def combine_repeats(results: list[Result]) -> list[Result]:
    """The results with each configuration's repeats in one sweep (same fingerprint, same
    sweep directory, repeat 0, 1, ...) combined, in the order of their first repeat. Two runs
    with the same repeat number (a batch-size search measuring a point again) stay two."""
    groups: dict[tuple[Any, ...], list[list[Result]]] = defaultdict(list)
    order: list[tuple[tuple[Any, ...], int]] = []
    for i, result in enumerate(results):
        key = (
            (result.fingerprint, str(Path(str(result.job_dir or "")).parent))
            if result.fingerprint is not None
            else ("unique", i)
        )
        runs = groups[key]
        for run in runs:
            if all(r.repeat != result.repeat for r in run):
                run.append(result)
                break
        else:
            runs.append([result])
            order.append((key, len(runs) - 1))
    return [combine(groups[key][k]) for key, k in order]


def combine(repeats: list[Result]) -> Result:
    """One configuration's repeats as one result."""
    repeats = sorted(repeats, key=lambda r: r.repeat)
    count = len(repeats)
    if count == 1:
        return replace(repeats[0], repeats=1)
    bad = [r for r in repeats if not r.ok]
    if bad:  # a broken repeat is never hidden behind its siblings' figures
        first = bad[0]
        why = f"repeat {first.repeat + 1} of {count}: {first.reason}"
        return replace(first, repeats=count, reason=why)
    stats = [r.throughput or {} for r in repeats]
    means = [float(s["mean"]) for s in stats]
    mean = statistics.fmean(means)
    spread = statistics.stdev(means)
    between = t95(count - 1) * spread / math.sqrt(count)
    halves = [_half_width(s) for s in stats]
    within = (
        math.sqrt(sum(h * h for h in halves)) / count
        if all(map(math.isfinite, halves))
        else math.nan
    )
    half = max(between, within) if math.isfinite(within) else between
    combined = {
        "mean": mean,
        "median": statistics.median(means),
        "std": spread,
        "min": min(s["min"] for s in stats),
        "max": max(s["max"] for s in stats),
        "n": sum(int(s["n"]) for s in stats),
        "dropped": sum(int(s.get("dropped") or 0) for s in stats),
        "cv": spread / mean if mean else math.nan,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
    }
    latencies = [r.latency_ms["mean"] for r in repeats if r.latency_ms]
    shaky = [r for r in repeats if r.unstable]
    reasons: list[str] = []
    if shaky:
        why = str(shaky[0].reason or "").removeprefix("unstable: ").split("; wide: ")[0]
        number = shaky[0].repeat + 1
        reasons.append(f"{len(shaky)} of {count} repeats unstable (repeat {number}: {why})")
    if combined["cv"] > BETWEEN_CV:
        reasons.append(
            f"the repeats' means differ by a coefficient of variation of {combined['cv']:.1%}"
        )
    first = repeats[0]
    # Wide when the combined interval is still wider than the target the runs measured to.
    target = (first.details.get("measurement") or {}).get("target_rel_ci")
    rel = half / abs(mean) if mean else math.nan
    wide = (
        f"95% interval ±{rel:.1%} of the mean over {count} repeats did not reach the target "
        f"±{target:.1%}"
        if isinstance(target, int | float) and math.isfinite(rel) and rel > target
        else None
    )
    return replace(
        first,
        throughput=combined,
        latency_ms={"mean": statistics.fmean(latencies)} if len(latencies) == count else None,
        unstable=bool(reasons),
        wide=wide is not None,
        reason=precision_reason(reasons, wide),
        repeats=count,
        details={
            **first.details,
            "efficiency": efficiency.rescaled(first.details.get("efficiency"), combined),
            "repeat_means": means,
            "job_dirs": [r.job_dir for r in repeats],
        },
    )


def _half_width(stats: dict[str, Any]) -> float:
    """A repeat's 95% half-width; NaN where it has none (one value: null in result.json)."""
    low, high = stats.get("ci95_low"), stats.get("ci95_high")
    if isinstance(low, int | float) and isinstance(high, int | float):
        return (float(high) - float(low)) / 2
    return math.nan
