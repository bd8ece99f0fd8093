"""The batch-size search's parameters (`hydra.sweeper.*` with hydra/sweeper=batch_search)."""

from __future__ import annotations

from dataclasses import dataclass

GOALS = ("all", "peak", "max_fit", "latency")


@dataclass
class SearchSettings:
    # all: the peak, the knee, max_fit, and latency when latency_ms is set, from the same
    # measurements; or one of peak, max_fit, latency.
    goal: str = "all"
    min: int = 1
    max: int = 1024
    multiple_of: int = 1  # every batch size tried is a multiple of this (e.g. the replicas)
    latency_ms: float | None = None  # a bound on a job's mean latency (ms)
    # Two throughputs differ only if their 95% intervals are apart and they differ by more
    # than this fraction; the knee is the smallest batch within it of the peak.
    tolerance: float = 0.03
    max_jobs: int = 40  # per cell
    max_rounds: int = 15

    def problems(self) -> list[str]:
        """Each bad parameter, with the fix; before any job starts."""
        found = []
        key = "hydra.sweeper"
        if self.goal not in GOALS:
            found.append(f"{key}.goal={self.goal}: must be one of {', '.join(GOALS)}")
        if self.multiple_of < 1:
            found.append(f"{key}.multiple_of={self.multiple_of}: must be 1 or more")
        if self.min < 1:
            found.append(f"{key}.min={self.min}: must be 1 or more")
        if self.min > self.max:
            found.append(f"{key}.min={self.min} is above {key}.max={self.max}: give min <= max")
        elif self.multiple_of >= 1 and self.min >= 1 and self.lowest() > self.highest():
            found.append(
                f"no multiple of {key}.multiple_of={self.multiple_of} lies between "
                f"min={self.min} and max={self.max}: widen the range"
            )
        if self.goal == "latency" and self.latency_ms is None:
            found.append(f"{key}.goal=latency needs a bound: give {key}.latency_ms=<milliseconds>")
        if self.latency_ms is not None and not self.latency_ms > 0:
            found.append(f"{key}.latency_ms={self.latency_ms}: must be a positive bound in ms")
        if not 0 <= self.tolerance < 1:
            found.append(f"{key}.tolerance={self.tolerance}: must be a fraction in [0, 1)")
        if self.max_jobs < 1:
            found.append(f"{key}.max_jobs={self.max_jobs}: must be 1 or more")
        if self.max_rounds < 1:
            found.append(f"{key}.max_rounds={self.max_rounds}: must be 1 or more")
        return found

    def lowest(self) -> int:
        """The smallest batch size tried: min rounded up to a multiple."""
        return -(-self.min // self.multiple_of) * self.multiple_of

    def highest(self) -> int:
        return self.max // self.multiple_of * self.multiple_of

    def wants(self, answer: str) -> bool:
        """Whether an answer (peak, knee, max_fit, latency) is sought."""
        if answer == "latency":
            return self.latency_ms is not None and self.goal in ("all", "latency")
        if answer == "knee":
            return self.goal in ("all", "peak")
        return self.goal in ("all", answer)
