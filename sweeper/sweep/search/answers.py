"""A cell's answers from its probes: the peak (and the probes set aside from it), the knee,
the largest batch size that fits in memory (with the evidence when the boundary was not
repeatable), and the largest within the latency bound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.sweep.search.strategy import CellSearch


def answers(search: CellSearch) -> dict[str, Any]:
    settings = search.settings
    out: dict[str, Any] = {"peak": None, "knee": None, "max_fit": None, "latency": None}
    if search.fitting() and settings.wants("peak"):
        out["peak"], out["knee"] = _peak(search), _knee(search)
    if settings.wants("max_fit"):
        out["max_fit"] = _max_fit(search)
    if settings.wants("latency"):
        within, _ = search.latency_bounds()
        if within is not None:
            out["latency"] = {
                "bound_ms": settings.latency_ms,
                "batch_size": within.batch_size,
                "latency_ms": within.latency_ms,
            }
    return out


def _peak(search: CellSearch) -> dict[str, Any]:
    best = max(search.fitting(), key=lambda p: p.throughput)
    interval = best.interval
    peak: dict[str, Any] = {
        "batch_size": best.batch_size,
        "throughput": best.throughput,
        "ci95_low": interval[0] if interval else None,
        "ci95_high": interval[1] if interval else None,
    }
    aside = set_aside(search, best.throughput)
    if aside:
        peak["set_aside"] = aside
    return peak


def _knee(search: CellSearch) -> dict[str, Any] | None:
    knee = search.knee_point()
    return None if knee is None else {"batch_size": knee.batch_size, "throughput": knee.throughput}


def _max_fit(search: CellSearch) -> dict[str, Any]:
    settings, fitting = search.settings, search.fitting()
    limit = search.first_oom()
    top = search.points().get(settings.highest())
    if limit is None and top is not None and top.fits:
        return {
            "batch_size": None,
            "note": f"max={settings.highest()} fits: nothing tried ran out of memory",
        }
    if limit is None:  # stopped before reaching max: not an answer
        largest = fitting[-1].batch_size if fitting else None
        return {
            "batch_size": None,
            "note": f"not found: the search stopped; the largest tried, {largest}, fits",
        }
    found: dict[str, Any] = {
        "batch_size": fitting[-1].batch_size if fitting else None,
        "first_oom": limit,
    }
    unrepeatable = search.unrepeatable()
    if unrepeatable:
        # The evidence: the largest that fitted at all, and every try of the batch sizes
        # that contradict the boundary.
        points = search.points()
        ran_ok = [b for b, p in points.items() if p.ran_ok()]
        found["largest_ok"] = max(ran_ok) if ran_ok else None
        found["flaky"] = {str(b): [p.status for p in points[b].probes] for b in unrepeatable}
    return found


def set_aside(search: CellSearch, peak: float | None) -> list[dict[str, Any]]:
    """Probes that ran ok, measured higher than the peak, and were not counted: their batch
    size did not fit on every try (or lies above one that ran out of memory)."""
    counted = {p.batch_size for p in search.fitting()}
    found = []
    for b, point in search.points().items():
        if b in counted or peak is None:
            continue
        for probe in point.ran_ok():
            if probe.throughput is not None and probe.throughput > peak:
                why = (
                    "ran out of memory on another try"
                    if point.oom
                    else f"above batch_size={search.first_oom()}, which ran out of memory"
                )
                found.append({"batch_size": b, "throughput": probe.throughput, "why": why})
    return found
