"""Statistics of a throughput series, and the seed's rule for combining instances.

The seed's figure: drop the first value of each instance, then average the rest. Whether
instances' values are averaged or summed is the workload's declaration: under poprun,
Graphcore's app prints the global estimate from every instance (mean); the built-in
workload prints each instance's own rate (sum). Either way instances are combined iteration
by iteration first, and the statistics are those of the combined series.

The 95% interval of the mean (one method for every series: README "What an interval
means"). Rates measured back to back are not independent: a neighbour's burst slows several
consecutive intervals, and a t-interval over such values is too narrow (at a lag-1
autocorrelation of 0.6 it covers the mean in about 65% of runs, not 95%). So the variance of
the mean is that of an AR(1) series with the autocorrelation estimated from the values:
    Var(mean) = s'^2 / n * f,  f = 1 + 2 * sum_{k<n} (1 - k/n) * rho^k
where rho is the lag-1 sample autocorrelation corrected for its bias in short series
(Kendall: E[r1] ~ rho - (1 + 4 rho) / n), raised by 0.5 of its standard error for the
uncertainty of the estimate and clamped to [0, 0.95], and s'^2 the sample variance corrected
for the same correlation (E[s^2] = sigma^2 (n - f) / (n - 1)). The effective sample size is
n / f. With rho = 0 (no correlation found) it is the t-interval. Below
MIN_VALUES_FOR_AUTOCORRELATION values the autocorrelation cannot be estimated: the interval is
the t-interval, and says so (`interval: t`), and it never stops the adaptive measuring rule.
tests/test_intervals.py measures its coverage on AR(1) series of known mean.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

COMBINE_RULES = ("mean", "sum")
MIN_VALUES_FOR_AUTOCORRELATION = 10
_RHO_MARGIN = 0.5  # standard errors of the estimate added to rho
_RHO_MAX = 0.95
# Interval methods, as result.json names them.
T_INTERVAL = "t"
AR1_INTERVAL = "ar1"  # t over the effective sample size of an AR(1) series
# A trend or a level shift inside the measured values: the two halves' means differ by more
# than this many standard errors (two-sided 1%) and by more than STEADY_REL of the mean.
STEADY_ALPHA = 0.01
STEADY_REL = 0.02


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
    interval: str = T_INTERVAL  # how the 95% interval was made
    lag1: float | None = None  # the lag-1 autocorrelation estimated (bias-corrected)
    n_eff: float | None = None  # the effective sample size the interval stands on

    def to_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)

    @property
    def rel_half_width(self) -> float:
        """The 95% interval's half-width relative to the mean (inf where there is none)."""
        if not (math.isfinite(self.ci95_high) and self.mean):
            return math.inf
        return (self.ci95_high - self.ci95_low) / 2 / abs(self.mean)


def t95(dof: float) -> float:
    """The two-sided 95% quantile of Student's t (dof may be fractional)."""
    if not dof >= 1:
        return math.nan
    return student_t_quantile(dof, 0.975)


def student_t_quantile(dof: float, probability: float) -> float:
    """SciPy's, imported when first needed (0.1-0.15 s: a tenth of a sweep's start, and a
    dry run needs none). The built-in workload's fork server imports it beforehand (a job
    importing it would be charged tens of MB), and a sweep before its first job."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, probability))


def lag1_autocorrelation(values: Sequence[float] | np.ndarray) -> float:
    """The lag-1 sample autocorrelation, corrected for its bias in a short series, and raised
    by _RHO_MARGIN standard errors; in [0, _RHO_MAX]."""
    n = len(values)
    series = _array(values)
    deviations = series - _fmean(series)
    total = _sequential_sum(deviations * deviations)
    if total == 0:
        return 0.0
    r1 = _sequential_sum(deviations[:-1] * deviations[1:]) / total
    rho = (n * r1 + 1) / (n - 4)
    rho += _RHO_MARGIN * math.sqrt(max(0.0, 1 - rho * rho) / n)
    return min(max(rho, 0.0), _RHO_MAX)


def sample_variance(values: Sequence[float] | np.ndarray, mean: float) -> float:
    """statistics.variance to within rounding, in C (a correctly rounded sum of the squared
    deviations): statistics' exact fractions took 0.2 s for a 500,000-value log."""
    deviations = _array(values) - mean
    return math.fsum((deviations * deviations).tolist()) / (len(values) - 1)


def _array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    np = _numpy()
    return np.asarray(values, dtype=np.float64)


def _numpy() -> Any:
    """NumPy, imported when first needed (0.06 s): not by a sweep's start, whose first
    results it is needed for only after its jobs are checked (it comes with SciPy, which a
    sweep imports while a forked process checks: sweeper.sweep.finish.import_scipy)."""
    import numpy

    return numpy


def _fmean(series: np.ndarray) -> float:
    """statistics.fmean's (a correctly rounded sum over n), read from the array at C speed
    (fmean itself would iterate over numpy scalars)."""
    return math.fsum(series.tolist()) / len(series)


def _sequential_sum(terms: np.ndarray) -> float:
    """The terms added one after another, as Python's sum adds them (numpy's sum adds in
    pairs: a different rounding). Element-wise numpy arithmetic rounds as Python's does."""
    return float(sum(terms.tolist()))


def variance_factor(rho: float, n: int) -> float:
    """Var(mean) over sigma^2 / n for an AR(1) series of n values."""
    total = 0.0
    for k in range(1, n):
        power = rho**k
        if power == 0.0:  # and every later term (rho < 1): a long series ends here
            break
        total += (1 - k / n) * power
    return 1 + 2 * total


def summarize(values: Sequence[float], dropped: int) -> Summary:
    """Statistics of the values kept; `dropped` is recorded as is."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = statistics.fmean(values)
    std = math.sqrt(sample_variance(values, mean)) if n > 1 else 0.0
    half, method, rho, n_eff = _half_width(values, std)
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
        interval=method,
        lag1=rho,
        n_eff=n_eff,
    )


def _half_width(values: Sequence[float], std: float) -> tuple[float, str, float | None, float]:
    n = len(values)
    if n < 2:
        return math.nan, T_INTERVAL, None, float(n)
    if n < MIN_VALUES_FOR_AUTOCORRELATION:
        return t95(n - 1) * std / math.sqrt(n), T_INTERVAL, None, float(n)
    rho = lag1_autocorrelation(values)
    factor = min(variance_factor(rho, n), n / 2)  # n / 2: at most half the values' worth
    variance = std * std * (n - 1) / (n - factor)
    half = t95(n - 1) * math.sqrt(variance * factor / n)
    return half, AR1_INTERVAL, rho, n / factor


def steady_state_problem(values: Sequence[float], summary: Summary) -> str | None:
    """Why the values have not reached a steady state, if they have not: the means of their
    two halves differ by more than chance allows (a trend, or a level shift) and by more than
    STEADY_REL. The noise is judged on what is left once the change is taken out (a level
    per half, or a line: whichever fits better), since a change itself looks like a strong
    autocorrelation. Needs twice MIN_VALUES_FOR_AUTOCORRELATION values."""
    n, half = len(values), len(values) // 2
    if n < 2 * MIN_VALUES_FOR_AUTOCORRELATION or not summary.mean:
        return None
    series = _array(values)
    first, second = statistics.fmean(values[:half]), statistics.fmean(values[half:])
    np = _numpy()
    levels = np.repeat([first, second], [half, n - half])
    slope, intercept = _linear_regression(series)
    line = intercept + slope * np.arange(n, dtype=np.float64)
    residuals = min(
        (series - fit for fit in (levels, line)),
        key=lambda r: _sequential_sum(r * r),
    )
    variance = sample_variance(residuals, _fmean(residuals))
    factor = min(variance_factor(lag1_autocorrelation(residuals), half), half / 2)
    standard_error = math.sqrt(2 * variance * factor / half)
    limit = student_t_quantile(n - 3, 1 - STEADY_ALPHA / 2) * standard_error
    change = second - first
    if abs(change) <= limit or abs(change) <= STEADY_REL * abs(summary.mean):
        return None
    return (
        f"no steady state: the second half of the measured values averages "
        f"{change / first:+.1%} against the first (more than chance and {STEADY_REL:.0%})"
    )


def _linear_regression(values: np.ndarray) -> tuple[float, float]:
    """statistics.linear_regression(range(n), values) (Python 3.11's sums) in C: the slope
    and the intercept of the least-squares line through the values against their index."""
    n = len(values)
    np = _numpy()
    index = np.arange(n, dtype=np.float64)
    index_mean = math.fsum(range(n)) / n
    values_mean = _fmean(values)
    index_deviations = index - index_mean
    sxy = math.fsum((index_deviations * (values - values_mean)).tolist())
    sxx = math.fsum((index_deviations * index_deviations).tolist())
    slope = sxy / sxx
    return slope, values_mean - slope * index_mean


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
    kept = [values[drop_first:] for values in per_instance.values()]
    dropped = max((min(drop_first, len(values)) for values in per_instance.values()), default=0)
    if not kept:
        return [], dropped
    # Iteration by iteration, over the iterations every instance reached, the instances'
    # values added in rank order.
    reached = min(map(len, kept))
    combined = _array(kept[0][:reached])
    for values in kept[1:]:
        combined = combined + _array(values[:reached])
    if rule == "mean":
        combined = combined / len(kept)
    return combined.tolist(), dropped
