"""Change points along one series of measurements, each with its own variance.

The series is fitted as a piecewise-constant function by exact optimal partitioning: the
cost of a segment is the weighted squared error around its weighted mean (weights 1/var),
each segment beyond the first costs `penalty`. Pure numpy; O(n^2) in the series' length,
which the caller bounds (history.window)."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import stdtr


def penalty(n: int) -> float:
    """A BIC-like price of one more segment: with unit-variance residuals, a new level has
    to explain a squared z of about 3.3-4 to be proposed (the test that follows decides)."""
    return 2.0 * math.log(max(n, 2)) + 9.0


def segment(values: np.ndarray, variances: np.ndarray) -> list[tuple[int, int]]:
    """The best piecewise-constant fit as [start, end) index pairs, in order."""
    n = len(values)
    if n == 0:
        return []
    w = 1.0 / variances
    cw = np.concatenate(([0.0], np.cumsum(w)))
    cwx = np.concatenate(([0.0], np.cumsum(w * values)))
    cwx2 = np.concatenate(([0.0], np.cumsum(w * values * values)))
    beta = penalty(n)
    best = np.zeros(n + 1)
    best[0] = -beta
    start_of = np.zeros(n + 1, dtype=int)
    for t in range(1, n + 1):
        s = np.arange(t)
        sw = cw[t] - cw[s]
        swx = cwx[t] - cwx[s]
        cost = (cwx2[t] - cwx2[s]) - swx * swx / sw
        total = best[s] + cost + beta
        i = int(np.argmin(total))
        best[t], start_of[t] = total[i], i
    bounds = []
    t = n
    while t > 0:
        bounds.append((int(start_of[t]), t))
        t = int(start_of[t])
    return bounds[::-1]


def level(values: np.ndarray, variances: np.ndarray) -> tuple[float, float]:
    """A segment's weighted mean and that mean's variance."""
    w = 1.0 / variances
    return float(np.sum(w * values) / np.sum(w)), float(1.0 / np.sum(w))


def between_run_variance(values: np.ndarray, own: np.ndarray, floor: float) -> float:
    """The spread between runs beyond each run's own uncertainty: from the differences of
    consecutive runs (a median, so that a step or an outlier barely moves it), less the
    runs' own variance; at least (floor x the series' level)^2."""
    minimum = (floor * float(np.median(np.abs(values)))) ** 2
    if len(values) < 3:
        return minimum
    diffs = np.diff(values)
    spread = 1.4826 * float(np.median(np.abs(diffs))) / math.sqrt(2)
    return max(spread * spread - float(np.median(own)), minimum)


def within_level_variance(values: np.ndarray, levels: list[tuple[int, int]]) -> float | None:
    """The spread of runs around their own level (n - k degrees of freedom); None when
    every level is one run."""
    dof = len(values) - len(levels)
    if dof < 1:
        return None
    squares = sum(float(np.sum((values[a:b] - values[a:b].mean()) ** 2)) for a, b in levels)
    return squares / dof


def two_sided_p(t: float, dof: int) -> float:
    """Student's t: the spread between runs is estimated from the series itself, with its
    own uncertainty (few runs: wider tails)."""
    return float(2 * stdtr(max(dof, 1), -abs(t)))


def benjamini_hochberg(p_values: list[float], tested: int) -> list[float]:
    """Adjusted p-values (Benjamini-Hochberg) for these candidates out of `tested` series
    tested at once (the series with no candidate count as tests too)."""
    m = max(tested, len(p_values))
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 1.0
    for rank in range(len(order), 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(running, 1.0)
    return adjusted
