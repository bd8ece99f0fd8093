"""The `history` config node: where the history lives and how it judges a change."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_URL = "sqlite:///outputs/history.db"
URL_ENV = "SWEEPER_HISTORY_URL"

# The environment a run reports (result.json's `environment`): which keys split a series
# (a new line) and which only annotate its points (a marked point on one line).
ENVIRONMENT_KEYS = (
    "host",
    "cpu_model",
    "cpu_count",
    "accelerator",
    "accelerator_driver",
    "sdk",
    "git_commit",
    "versions",
)
DEFAULT_SPLIT = ["cpu_model", "cpu_count", "accelerator"]


@dataclass
class HistorySettings:
    enabled: bool = True
    # null: $SWEEPER_HISTORY_URL, else sqlite:///outputs/history.db (relative to where the
    # sweep starts). A password is never written anywhere: give it in the environment
    # (PGPASSWORD, SWEEPER_HISTORY_URL) or ~/.pgpass; one given here is taken out of the
    # config before anything is written.
    url: str | None = None
    # Environment keys that split a series; the others annotate its points.
    split: list[str] = field(default_factory=lambda: list(DEFAULT_SPLIT))
    # A regression is reported when its change is at least this large (relative) ...
    threshold: float = 0.05
    # ... and significant at this level after correcting for the series tested at once.
    alpha: float = 0.01
    # The newest runs of each series that detection looks at.
    window: int = 200
    # The smallest run-to-run spread assumed (relative): a series of a few identical runs
    # does not make every small wobble significant.
    noise_floor: float = 0.01

    def problems(self) -> list[str]:
        found = []
        unknown = [k for k in self.split if k not in ENVIRONMENT_KEYS]
        if unknown:
            found.append(
                f"history.split: unknown key(s) {', '.join(unknown)}; known: "
                + ", ".join(ENVIRONMENT_KEYS)
            )
        if not 0 < self.threshold < 1:
            found.append(f"history.threshold={self.threshold}: give a fraction, e.g. 0.05")
        if not 0 < self.alpha < 1:
            found.append(f"history.alpha={self.alpha}: give a level, e.g. 0.01")
        if self.window < 3:
            found.append(f"history.window={self.window}: needs at least 3 runs")
        return found
