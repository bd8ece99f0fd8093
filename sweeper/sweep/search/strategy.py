"""One cell's batch-size search: from the probes measured so far to the batch sizes to try
next, and to its answers. Pure: no jobs, no files (sweep.py runs the probes).

How it proceeds:
- Round 1 brackets with a geometric ladder (min, 2 min, 4 min, ... max), all at once.
- The largest batch that fits: between the largest that ran and the smallest that ran out
  of memory, bisect down to `multiple_of`; then run the two boundary points once more
  (memory limits can be flaky; a boundary point that fails its rerun moves the boundary).
- The peak: never decided by one sample. Around the best point, and around every point
  statistically the same as it (real curves have dips and several near-peaks), bisect
  towards each neighbour until the neighbour is `multiple_of` away, or the same and within
  FLAT_RATIO (two equal points far apart may have a higher hump between them).
- The knee: the smallest batch within `tolerance` of the peak; bisected against the next
  smaller measured batch down to `multiple_of`.
- The latency bound: the largest batch whose mean latency is within it, bisected like the
  memory boundary.
- A probe that fails for another reason (crash, time limit, no metrics, cancelled) is tried
  once more, even after an earlier good run of that batch size; failing twice stops the
  cell's search with the reason.
Every measured point is reused; a point measured twice counts both measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweeper.result.model import Result, Status
from sweeper.sweep.search.settings import SearchSettings

OK, OOM = Status.OK.value, Status.OOM.value  # a probe's status, as its result says
# Two neighbours with the same throughput are taken to bound a flat stretch of the curve
# only when this close (a ratio of batch sizes); farther apart, the peak is sought between.
FLAT_RATIO = 1.25
# A cell's search status. FLAKY_BOUNDARY: the search ended with its answers, but the memory
# boundary was not repeatable (a batch size both fitted and ran out of memory, or one fitted
# above a smaller one that did not); max_fit then gives the evidence.
SEARCHING, DONE, FAILED, INCOMPLETE = "searching", "ok", "failed", "incomplete"
FLAKY_BOUNDARY = "flaky-boundary"
# Statuses of a search that gave its answers.
ANSWERED = (DONE, FLAKY_BOUNDARY)


@dataclass
class Probe:
    """One job of the search: a batch size and what its run gave."""

    batch_size: int
    status: str
    throughput: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    latency_ms: float | None = None
    job_dir: str | None = None
    reason: str | None = None
    # The throughput the device's limit allows (sweeper/result/efficiency.py), if known.
    limit_throughput: float | None = None

    @classmethod
    def from_result(cls, result: Result) -> Probe:
        throughput = result.throughput or {}
        latency = result.latency_ms or {}
        ok = result.ok
        return cls(
            batch_size=int(result.choices["batch_size"]),
            status=result.status.value,
            throughput=result.mean if ok else None,
            ci95_low=_finite(throughput.get("ci95_low")) if ok else None,
            ci95_high=_finite(throughput.get("ci95_high")) if ok else None,
            latency_ms=latency.get("mean") if ok else None,
            job_dir=result.job_dir,
            reason=result.reason,
            limit_throughput=_finite(
                (result.details.get("efficiency") or {}).get("limit_throughput")
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "status": self.status,
            "throughput": self.throughput,
            "ci95_low": self.ci95_low,
            "ci95_high": self.ci95_high,
            "latency_ms": self.latency_ms,
            "job_dir": self.job_dir,
            "reason": self.reason,
            "limit_throughput": self.limit_throughput,
        }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass
class Point:
    """Every probe of one batch size, together."""

    batch_size: int
    probes: list[Probe] = field(default_factory=list)

    @property
    def oom(self) -> bool:
        return any(p.status == OOM for p in self.probes)

    @property
    def fits(self) -> bool:
        """Ran without running out of memory, and its last try ran to the end (a failure
        after a good run, e.g. an allocation that fails outside the allocator near a memory
        limit, is tried again before the point counts)."""
        return not self.oom and any(p.status == OK for p in self.probes) and self.settled

    @property
    def flaky(self) -> bool:
        """Both fitted and ran out of memory."""
        return self.oom and any(p.status == OK for p in self.probes)

    def tally(self) -> str:
        """Its tries, e.g. "ok, oom"."""
        return ", ".join(p.status for p in self.probes)

    @property
    def settled(self) -> bool:
        return bool(self.probes) and self.probes[-1].status in (OK, OOM)

    @property
    def failures(self) -> list[Probe]:
        return [p for p in self.probes if p.status not in (OK, OOM)]

    def ran_ok(self) -> list[Probe]:
        return [p for p in self.probes if p.status == OK and p.throughput is not None]

    @property
    def throughput(self) -> float:
        values = [p.throughput for p in self.ran_ok() if p.throughput is not None]
        return sum(values) / len(values) if values else math.nan

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% interval; over several measurements, the span of theirs (the spread
        between them counts). None when a measurement has none (one value)."""
        ok = self.ran_ok()
        lows = [p.ci95_low for p in ok]
        highs = [p.ci95_high for p in ok]
        if not ok or any(v is None for v in lows + highs):
            return None
        return min(v for v in lows if v is not None), max(v for v in highs if v is not None)

    @property
    def latency_ms(self) -> float | None:
        values = [p.latency_ms for p in self.ran_ok() if p.latency_ms is not None]
        return sum(values) / len(values) if values else None


class CellSearch:
    """The search of one cell (one combination of the other swept choices)."""

    def __init__(self, settings: SearchSettings, probes: list[Probe] | None = None) -> None:
        self.settings = settings
        self.probes: list[Probe] = list(probes or [])
        self.status = SEARCHING
        self.reason: str | None = None
        self.rounds = 0

    # -- what has been measured ----------------------------------------------------------
    def add(self, probe: Probe) -> None:
        self.probes.append(probe)

    def points(self) -> dict[int, Point]:
        found: dict[int, Point] = {}
        for probe in self.probes:
            found.setdefault(probe.batch_size, Point(probe.batch_size)).probes.append(probe)
        return dict(sorted(found.items()))

    def first_oom(self) -> int | None:
        return next((b for b, p in self.points().items() if p.oom), None)

    def fitting(self) -> list[Point]:
        """Points that ran, below the first that ran out of memory (a point above it that
        ran once is not trusted to fit)."""
        limit = self.first_oom()
        return [p for b, p in self.points().items() if p.fits and (limit is None or b < limit)]

    def same(self, a: Point, b: Point) -> bool:
        """Statistically the same throughput: they differ only if their intervals are apart
        and they differ by more than the tolerance."""
        high = max(a.throughput, b.throughput)
        close = abs(a.throughput - b.throughput) <= self.settings.tolerance * high
        ia, ib = a.interval, b.interval
        overlap = ia is not None and ib is not None and ia[0] <= ib[1] and ib[0] <= ia[1]
        return close or overlap

    # -- what to try next ----------------------------------------------------------------
    def ladder(self) -> list[int]:
        low, high = self.settings.lowest(), self.settings.highest()
        sizes, b = [], low
        while b < high:
            sizes.append(b)
            b *= 2
        return [*sizes, high]

    def next_batch_sizes(self) -> list[int]:
        """The next round's batch sizes; none when the search is over (see status)."""
        if self.status != SEARCHING:
            return []
        if self.rounds == 0:  # the ladder first (a resumed search: what it still lacks)
            missing = [b for b in self.ladder() if b not in self.points()]
            if missing:
                return self._within_budget(missing)
        failed = self._failed_twice()
        if failed is not None:
            last = failed.failures[-1]
            why = (last.reason or "").strip().splitlines()
            self.status = FAILED
            self.reason = f"batch_size={failed.batch_size} failed twice: {last.status}" + (
                f": {why[0]}" if why else ""
            )
            return []
        wanted: list[int] = []
        for proposal in (
            self._retries(),
            self._memory_boundary() if self.settings.wants("max_fit") else [],
            self._around_peak() if self.settings.wants("peak") else [],
            self._knee() if self.settings.wants("knee") else [],
            self._latency_boundary() if self.settings.wants("latency") else [],
        ):
            wanted += [b for b in dict.fromkeys(proposal) if b not in wanted]
        if not wanted:
            self._finish()
            return []
        return self._within_budget(wanted)

    def _within_budget(self, sizes: list[int]) -> list[int]:
        left = self.settings.max_jobs - len(self.probes)
        if left <= 0:
            self.status = INCOMPLETE
            self.reason = f"hydra.sweeper.max_jobs={self.settings.max_jobs} reached"
            return []
        return sizes[:left]

    def _failed_twice(self) -> Point | None:
        for point in self.points().values():
            if not point.fits and not point.oom and len(point.failures) >= 2:
                return point
        return None

    def _retries(self) -> list[int]:
        return [
            b
            for b, p in self.points().items()
            if not p.settled and not p.oom and len(p.failures) == 1
        ]

    def _between(self, low: int, high: int) -> int | None:
        """A batch size halfway between two, on the grid; None when they are neighbours."""
        m = self.settings.multiple_of
        if high - low <= m:
            return None
        return m * ((low // m + high // m) // 2)

    def _memory_boundary(self) -> list[int]:
        limit = self.first_oom()
        if limit is None:
            return []
        points = self.points()
        fitting = self.fitting()
        below = fitting[-1].batch_size if fitting else None
        if below is None:
            # The smallest tried ran out of memory: once more, then that is the answer.
            return [limit] if len(points[limit].probes) < 2 else []
        middle = self._between(below, limit)
        if middle is not None:
            return [middle]
        # Neighbours: each boundary point measured twice.
        return [b for b in (below, limit) if len(points[b].probes) < 2]

    def _around_peak(self) -> list[int]:
        fitting = self.fitting()
        if not fitting:
            return []
        best = max(fitting, key=lambda p: p.throughput)
        contenders = [p for p in fitting if p is best or self.same(p, best)]
        limit = self.first_oom()
        sizes = [p.batch_size for p in fitting]
        wanted: list[int] = []
        for point in contenders:
            i = sizes.index(point.batch_size)
            lower = fitting[i - 1] if i > 0 else None
            upper = fitting[i + 1] if i + 1 < len(fitting) else None
            if lower is not None and self._unsettled(lower, point):
                wanted.append(self._between(lower.batch_size, point.batch_size) or 0)
            if upper is not None and self._unsettled(point, upper):
                wanted.append(self._between(point.batch_size, upper.batch_size) or 0)
            elif upper is None and limit is not None:
                # Above the highest that fits lies unmeasured ground up to the first OOM.
                wanted.append(self._between(point.batch_size, limit) or 0)
        return [b for b in wanted if b and b not in self.points()]

    def _unsettled(self, low: Point, high: Point) -> bool:
        """Whether the peak may still lie between two neighbours: they differ, or they are
        the same but far apart (a hump between two equal points is higher than both)."""
        if not self.same(low, high):
            return True
        return high.batch_size > FLAT_RATIO * low.batch_size

    def knee_point(self) -> Point | None:
        fitting = self.fitting()
        if not fitting:
            return None
        peak = max(p.throughput for p in fitting)
        return next(p for p in fitting if p.throughput >= (1 - self.settings.tolerance) * peak)

    def _knee(self) -> list[int]:
        knee = self.knee_point()
        if knee is None:
            return []
        fitting = self.fitting()
        i = fitting.index(knee)
        if i == 0:
            return []
        middle = self._between(fitting[i - 1].batch_size, knee.batch_size)
        return [middle] if middle is not None and middle not in self.points() else []

    def latency_bounds(self) -> tuple[Point | None, int | None]:
        """The largest fitting point within the bound, and the smallest batch above it that
        is over the bound or ran out of memory."""
        bound = self.settings.latency_ms
        assert bound is not None
        within: Point | None = None
        for point in self.fitting():
            if point.latency_ms is not None and point.latency_ms <= bound:
                within = point
        over = [
            b
            for b, p in self.points().items()
            if (within is None or b > within.batch_size)
            and (p.oom or (p.fits and p.latency_ms is not None and p.latency_ms > bound))
        ]
        return within, (min(over) if over else None)

    def _latency_boundary(self) -> list[int]:
        within, over = self.latency_bounds()
        if within is None or over is None:
            return []
        middle = self._between(within.batch_size, over)
        return [middle] if middle is not None and middle not in self.points() else []

    def _finish(self) -> None:
        fitting = self.fitting()
        if not fitting and self.points():
            lowest = min(self.points())
            self.status = FAILED
            self.reason = f"batch_size={lowest} (the smallest tried) ran out of memory"
            return
        unrepeatable = self.unrepeatable()
        if unrepeatable:
            self.status = FLAKY_BOUNDARY
            self.reason = "the memory boundary was not repeatable: " + "; ".join(
                f"batch_size={b}: {self.points()[b].tally()}" for b in unrepeatable
            )
            return
        self.status = DONE

    def unrepeatable(self) -> list[int]:
        """Batch sizes that contradict a clean memory boundary: those that both fitted and
        ran out of memory, and those that ran ok above one that ran out of memory."""
        limit = self.first_oom()
        if limit is None:
            return []
        return [
            b
            for b, p in self.points().items()
            if p.flaky or (b > limit and any(probe.status == OK for probe in p.probes))
        ]

    def answers(self) -> dict[str, Any]:
        """The search's answers so far (sweeper/sweep/search/answers.py)."""
        from sweeper.sweep.search.answers import answers

        return answers(self)
