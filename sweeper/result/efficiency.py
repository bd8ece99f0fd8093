"""A figure against the hardware's limit: the achieved FLOP/s as a share of the peak.

The work per sample and the limit are declared (workload.metrics.flops_per_sample or the
model's flops_per_sample for programs that do not count it; system.peak_tflops from a
datasheet) or said by the program in its log, in lines of its own (the built-in workload
counts and measures both: sweeper/workload/work.py):

    work: flops_per_sample=8.18e+09 (how it was counted)
    limit: peak_flops=4.8e+11 (how it was measured)

A declared figure wins over a logged one; the result names the source of each. The share's
95% interval is the throughput's, scaled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NUMBER = rb"(?P<value>[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?)"
WORK_LINE = re.compile(
    rb"work: flops_per_sample=" + _NUMBER + rb" \((?P<source>.*)\)[ \t\r]*$", re.M
)
LIMIT_LINE = re.compile(rb"limit: peak_flops=" + _NUMBER + rb" \((?P<source>.*)\)[ \t\r]*$", re.M)
HEAD_BYTES = 1 << 20  # programs say both before they measure


@dataclass(frozen=True)
class Figure:
    value: float  # FLOP per sample, or FLOP/s
    source: str


def from_logs(paths: Iterable[Path]) -> tuple[Figure | None, Figure | None]:
    """The work and the limit a program printed near the start of its logs."""
    work = limit = None
    for path in paths:
        try:
            with path.open("rb") as f:
                head = f.read(HEAD_BYTES)
        except OSError:
            continue
        found = from_text(head)
        work, limit = work or found[0], limit or found[1]
    return work, limit


def from_text(text: bytes) -> tuple[Figure | None, Figure | None]:
    """The work and the limit a program printed, in its output."""
    return _figure(WORK_LINE, text), _figure(LIMIT_LINE, text)


def _figure(pattern: re.Pattern[bytes], text: bytes) -> Figure | None:
    found = pattern.search(text)
    if found is None:
        return None
    value = float(found["value"])
    source = found["source"].decode(errors="replace")
    return Figure(value, source) if math.isfinite(value) and value > 0 else None


def efficiency(
    throughput: dict[str, Any] | None, work: Figure | None, limit: Figure | None
) -> dict[str, Any] | None:
    """result.json's `efficiency`; None without a throughput, the work or the limit."""
    mean = _number((throughput or {}).get("mean"))
    if mean is None or work is None or limit is None:
        return None
    scale = work.value / limit.value
    low, high = (_number((throughput or {}).get(k)) for k in ("ci95_low", "ci95_high"))
    return {
        "flops_per_sample": work.value,
        "work_source": work.source,
        "achieved_flops": mean * work.value,  # FLOP/s
        "peak_flops": limit.value,  # FLOP/s
        "limit_source": limit.source,
        "share": mean * scale,
        "share_ci95_low": None if low is None else low * scale,
        "share_ci95_high": None if high is None else high * scale,
        # The throughput the limit allows, in the figure's own unit: the plots' line.
        "limit_throughput": limit.value / work.value,
    }


def rescaled(previous: dict[str, Any] | None, throughput: dict[str, Any]) -> dict[str, Any] | None:
    """The efficiency of a figure made of runs with the same work and limit (repeats)."""
    if not previous:
        return None
    work = Figure(float(previous["flops_per_sample"]), str(previous["work_source"]))
    limit = Figure(float(previous["peak_flops"]), str(previous["limit_source"]))
    return efficiency(throughput, work, limit)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
