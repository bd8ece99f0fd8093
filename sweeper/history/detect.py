"""Regressions and improvements that are real, from the stored runs.

A series is one configuration (tables.IDENTITY, its flags, the environment keys that split)
and one metric. For each series, over its newest `window` runs:
- the noise model: each run's own 95% interval (its standard error) plus the spread between
  runs seen in that series (changepoints.between_run_variance), at least a floor;
- change points by a penalized piecewise-constant fit; a level that lasted one run and is
  not the newest (a dip that came back) is set aside and the series fitted again; adjacent
  levels closer than the threshold, or not significantly apart, are merged;
- a finding: the newest level against the one before it, when it differs by at least
  `threshold` (relative) and is significant after a Benjamini-Hochberg correction over every
  series tested; direction-aware (throughput down, latency up: a regression);
- a status flip: a configuration whose newest runs fail (failed, oom, timeout, ...) after it
  ran ok is a regression. A batch-size search's probe that ran out of memory is what the
  search learned (its boundary), not a verdict on the configuration: it is left out;
- a batch-size search's answers: the largest batch that fits (max_fit) and the largest
  within the latency bound (latency), each a series per cell; the newest search's answer
  against the one before it, smaller: a regression, larger: an improvement.
Findings of one configuration that began in the same sweep, moving the same way, are one
finding listing their batch sizes (a driver update moves several at once)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from sweeper.history.changepoints import (
    benjamini_hochberg,
    between_run_variance,
    level,
    segment,
    two_sided_p,
    within_level_variance,
)
from sweeper.history.frames import annotation_changes, iso, records
from sweeper.history.settings import HistorySettings
from sweeper.history.tables import IDENTITY, SEARCH_CELL, SEARCH_PROBE
from sweeper.result.model import Status

SERIES = [*IDENTITY, "flags", "environment"]
CONFIGURATION = [c for c in SERIES if c != "batch_size"]
HIGHER_IS_BETTER = {"throughput": True, "latency_ms": False, "efficiency": True}
REGRESSION, IMPROVEMENT = "regression", "improvement"
STATUS = "status"
NOT_A_VERDICT = {
    Status.CANCELLED.value,
    Status.NOT_RUN.value,
}  # stopped from outside: says nothing of the program
# The search's answers whose fall is a regression (a batch size: larger is better).
SEARCH_ANSWER_METRICS = ("max_fit", "latency")
_Z95 = 1.959963984540054


@dataclass
class Change:
    """One series' newest level against the one before it."""

    series: tuple[Any, ...]
    metric: str
    batch_size: int
    before: float
    after: float
    z: float
    p_value: float
    since_row: dict[str, Any]
    previous_row: dict[str, Any]
    p_adjusted: float = 1.0

    @property
    def change(self) -> float:
        return (self.after - self.before) / abs(self.before) if self.before else math.inf

    @property
    def kind(self) -> str:
        worse = self.change < 0 if HIGHER_IS_BETTER.get(self.metric, True) else self.change > 0
        return REGRESSION if worse else IMPROVEMENT


@dataclass
class Finding:
    id: str
    kind: str
    workload: str
    model: str
    system: str
    mode: str
    data: str
    precision: str
    instances: int
    flags: dict[str, Any]
    environment: dict[str, Any]
    batch_sizes: list[int]
    metric: str
    change_pct: float | None
    before: float | str
    after: float | str
    since: str
    since_sweep: str
    p_value: float | None
    evidence: str
    per_batch_size: list[dict[str, Any]] = field(default_factory=list)
    changed_at_since: dict[str, list[Any]] = field(default_factory=dict)
    acked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def findings(
    frame: pd.DataFrame,
    settings: HistorySettings,
    acked: set[str] | None = None,
    improvements: bool = False,
    since: datetime | None = None,
    answers: pd.DataFrame | None = None,
) -> list[Finding]:
    """What is still present at the newest run of each series, worst first; `answers`, the
    stored batch-size search answers, add their own."""
    found = search_answer_changes(answers) if answers is not None else []
    if not frame.empty:
        changes, tested = _metric_changes(frame, settings)
        adjusted = benjamini_hochberg([c.p_value for c in changes], tested)
        kept = []
        for change, p in zip(changes, adjusted, strict=True):
            change.p_adjusted = p
            if p < settings.alpha and abs(change.change) >= settings.threshold:
                kept.append(change)
        found += _grouped(kept) + _status_flips(frame)
    found = [f for f in found if improvements or f.kind == REGRESSION]
    if since is not None:
        found = [f for f in found if datetime.fromisoformat(f.since) >= since]
    for f in found:
        f.acked = f.id in (acked or set())
    return sorted(
        found,
        key=lambda f: (f.kind != REGRESSION, f.metric != STATUS, -abs(f.change_pct or 0)),
    )


def _metric_changes(frame: pd.DataFrame, settings: HistorySettings) -> tuple[list[Change], int]:
    measured = frame[frame["metric"].notna() & (frame["status"] == "ok")]
    if "unit" not in measured:  # a frame of runs stored before units were
        measured = measured.assign(unit=None)
    measured = measured.sort_values(["started_at", "key"])  # groups keep this order
    changes: list[Change] = []
    tested = 0
    # A series never mixes units (a declaration whose unit changed starts a new one).
    by = [*SERIES, "unit", "metric"]
    for key, group in measured.groupby(by, sort=False, dropna=False):
        runs = group.tail(settings.window)
        tested += 1
        change = _series_change(runs, str(key[-1]), settings)
        if change is not None:
            change.series = tuple(key[:-2])
            changes.append(change)
    return changes, tested


def _series_change(runs: pd.DataFrame, metric: str, settings: HistorySettings) -> Change | None:
    values = runs["mean"].to_numpy(dtype=float)
    if len(values) < 2:
        return None
    low = runs["ci95_low"].to_numpy(dtype=float)
    high = runs["ci95_high"].to_numpy(dtype=float)
    own = np.nan_to_num(((high - low) / (2 * _Z95)) ** 2, nan=0.0)
    spread = between_run_variance(values, own, settings.noise_floor)
    index, levels = _fit(values, own + spread)
    # The spread around the levels found: a second, more efficient estimate; the larger of
    # the two is kept (a series that wanders is not made to look steady), and fitted again.
    within = within_level_variance(values[index], levels)
    if within is not None and within - float(np.median(own)) > spread:
        spread = within - float(np.median(own))
        index, levels = _fit(values, own + spread)
    variances = own + spread
    dof = max(len(index) - len(levels), 1)
    levels = _merged(values[index], variances[index], levels, dof, settings)
    if len(levels) < 2:
        return None
    (b0, b1), (a0, a1) = levels[-2], levels[-1]
    before, var_before = level(values[index[b0:b1]], variances[index[b0:b1]])
    after, var_after = level(values[index[a0:a1]], variances[index[a0:a1]])
    z = (after - before) / math.sqrt(var_before + var_after)
    since_row, previous_row = records(runs.iloc[[index[a0], index[a0 - 1]]])
    return Change(
        series=(),
        metric=metric,
        batch_size=int(since_row["batch_size"]),
        before=before,
        after=after,
        z=z,
        p_value=two_sided_p(z, dof),
        since_row=since_row,
        previous_row=previous_row,
    )


def _fit(values: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The levels of a series, after setting aside one-run levels that came back (a dip):
    the runs kept (their indices) and the levels over those."""
    index = np.arange(len(values))
    levels = segment(values, variances)
    transient = [start for start, end in levels[:-1] if end - start == 1]
    if transient:
        index = np.delete(index, transient)
        levels = segment(values[index], variances[index])
    return index, levels


def _merged(
    values: np.ndarray,
    variances: np.ndarray,
    levels: list[tuple[int, int]],
    dof: int,
    settings: HistorySettings,
) -> list[tuple[int, int]]:
    """Adjacent levels that are not a real change (smaller than the threshold, or not
    significant on their own) become one, the least different pair first."""
    levels = list(levels)
    while len(levels) > 1:
        weakest, weakest_z = None, math.inf
        for i in range(len(levels) - 1):
            (s0, s1), (t0, t1) = levels[i], levels[i + 1]
            m0, v0 = level(values[s0:s1], variances[s0:s1])
            m1, v1 = level(values[t0:t1], variances[t0:t1])
            z = abs(m1 - m0) / math.sqrt(v0 + v1)
            small = abs(m1 - m0) < settings.threshold * abs(m0)
            if (small or two_sided_p(z, dof) >= settings.alpha) and z < weakest_z:
                weakest, weakest_z = i, z
        if weakest is None:
            break
        levels[weakest : weakest + 2] = [(levels[weakest][0], levels[weakest + 1][1])]
    return levels


def _grouped(changes: list[Change]) -> list[Finding]:
    """One finding per configuration, metric, direction and sweep where it began."""
    groups: dict[tuple[Any, ...], list[Change]] = {}
    for change in changes:
        row = change.since_row
        key = (
            tuple(row[c] for c in CONFIGURATION),
            change.metric,
            change.kind,
            row["sweep"],
        )
        groups.setdefault(key, []).append(change)
    found = []
    for members in groups.values():
        members.sort(key=lambda c: c.batch_size)
        worst = max(members, key=lambda c: abs(c.change))
        row = worst.since_row
        found.append(
            _finding(
                row,
                kind=worst.kind,
                metric=worst.metric,
                batch_sizes=[c.batch_size for c in members],
                change_pct=round(100 * worst.change, 2),
                before=worst.before,
                after=worst.after,
                since=min(iso(c.since_row["started_at"]) for c in members),
                p_value=min(c.p_adjusted for c in members),
                evidence=f"t={worst.z:.1f}, p={min(c.p_adjusted for c in members):.2g} "
                "(Benjamini-Hochberg adjusted)",
                per_batch_size=[
                    {
                        "batch_size": c.batch_size,
                        "before": c.before,
                        "after": c.after,
                        "change_pct": round(100 * c.change, 2),
                        "p_value": c.p_adjusted,
                    }
                    for c in members
                ],
                changed=annotation_changes(worst.previous_row, worst.since_row),
            )
        )
    return found


def _status_flips(frame: pd.DataFrame) -> list[Finding]:
    """Configurations whose newest runs fail after they ran ok: one regression per
    configuration and sweep where the failing began."""
    runs = frame.drop_duplicates("key")
    runs = runs[~runs["status"].isin(NOT_A_VERDICT)]
    if "role" in runs:
        runs = runs[~((runs["role"] == SEARCH_PROBE) & (runs["status"] == "oom"))]
    runs = runs.sort_values(["started_at", "key"])
    flips: dict[tuple[Any, ...], list[tuple[dict[str, Any], dict[str, Any], str]]] = {}
    for _, group in runs.groupby(SERIES, sort=False, dropna=False):
        ok = (group["status"] == "ok").to_numpy()
        if ok[-1] or not ok.any():
            continue  # the newest ran ok, or it never did
        j = int(np.flatnonzero(ok)[-1]) + 1  # the first run of the failing streak
        last_ok, first_bad = records(group.iloc[[j - 1, j]])
        key = (tuple(first_bad[c] for c in CONFIGURATION), first_bad["sweep"])
        flips.setdefault(key, []).append((last_ok, first_bad, str(group["status"].iloc[-1])))
    found = []
    for members in flips.values():
        members.sort(key=lambda m: int(m[1]["batch_size"]))
        last_ok, first_bad, status = members[0]
        found.append(
            _finding(
                first_bad,
                kind=REGRESSION,
                metric=STATUS,
                batch_sizes=[int(m[1]["batch_size"]) for m in members],
                change_pct=None,
                before="ok",
                after=status,
                since=min(iso(m[1]["started_at"]) for m in members),
                p_value=None,
                evidence=f"status ok -> {status}"
                + (f": {first_bad['reason']}" if first_bad.get("reason") else ""),
                per_batch_size=[
                    {"batch_size": int(m[1]["batch_size"]), "before": "ok", "after": m[2]}
                    for m in members
                ],
                changed=annotation_changes(last_ok, first_bad),
            )
        )
    return found


def search_answer_changes(answers: pd.DataFrame) -> list[Finding]:
    """The newest search of each cell against the one before it: a smaller max_fit or
    latency-bound batch size is a regression, a larger one an improvement. A search that
    did not find the answer (None) is compared with nothing."""
    if answers.empty:
        return []
    found = []
    chosen = answers[answers["answer"].isin(SEARCH_ANSWER_METRICS) & answers["batch_size"].notna()]
    chosen = chosen.sort_values(["started_at", "key"])
    keys = [*SEARCH_CELL, "flags", "environment", "answer"]
    for _, group in chosen.groupby(keys, sort=False, dropna=False):
        if len(group) < 2:
            continue
        previous, newest = records(group.iloc[[-2, -1]])
        before, after = int(previous["batch_size"]), int(newest["batch_size"])
        if before == after:
            continue
        row = {**newest, "batch_size": after}
        found.append(
            _finding(
                row,
                kind=REGRESSION if after < before else IMPROVEMENT,
                metric=str(newest["answer"]),
                batch_sizes=[after],
                change_pct=round(100 * (after - before) / before, 2),
                before=before,
                after=after,
                since=iso(newest["started_at"]),
                p_value=None,
                evidence=f"batch-size search: {newest['answer']} {before} -> {after} "
                f"(searches {previous['sweep']} -> {newest['sweep']}; status {newest['status']})",
                changed={},
            )
        )
    return found


def _finding(row: dict[str, Any], changed: dict[str, list[Any]], **values: Any) -> Finding:
    identity = {c: row[c] for c in CONFIGURATION if c not in ("flags", "environment")}
    flags, environment = json.loads(row["flags"]), json.loads(row["environment"])
    blob = json.dumps(
        [identity, flags, environment, values["metric"], values["kind"], row["sweep"]],
        sort_keys=True,
        default=str,
    )
    return Finding(
        id=hashlib.sha256(blob.encode()).hexdigest()[:10],
        workload=str(row["workload"]),
        model=str(row["model"]),
        system=str(row["system"]),
        mode=str(row["mode"]),
        data=str(row["data"]),
        precision=str(row["precision"]),
        instances=int(row["instances"]),
        flags=flags,
        environment=environment,
        since_sweep=str(row["sweep"]),
        changed_at_since=changed,
        **values,
    )
