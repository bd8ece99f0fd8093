"""What the command ended with, for its exit status.

Hydra discards the task's and the sweeper's return values (hydra.main returns nothing), so
the single run and the sweep each report here, once, and `python -m sweeper` reads it when
Hydra returns: the one channel between them, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class CommandOutcome:
    statuses: list[str] = field(default_factory=list)
    succeeded: bool = True  # what the reporter judged (a search's answers: strategy.ANSWERED)

    def report(self, statuses: Sequence[str], succeeded: bool) -> None:
        self.statuses = [str(s) for s in statuses]
        self.succeeded = succeeded

    def exit_status(self) -> int:
        return 0 if self.succeeded else 1


outcome = CommandOutcome()
