"""What the command ended with, for its exit status.

Hydra discards the task's and the sweeper's return values (hydra.main returns nothing), so
the single run and the sweep each report here, once, and `python -m sweeper` reads it when
Hydra returns: the one channel between them, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

REFUSED = 2


@dataclass
class CommandOutcome:
    statuses: list[str] = field(default_factory=list)
    succeeded: bool = True  # what the reporter judged (a search's answers: strategy.ANSWERED)
    refused: bool = False  # bad input: nothing ran
    started: bool = False  # the sweep or the single run began (Hydra composed the config)

    def report(self, statuses: Sequence[str], succeeded: bool) -> None:
        self.statuses = [str(s) for s in statuses]
        self.succeeded = succeeded

    def refuse(self) -> None:
        """The command's input was refused before any job started (exit status 2, as a
        usage error: a script tells it from a job that failed, exit status 1)."""
        self.report(["error"], succeeded=False)
        self.refused = True

    def exit_status(self) -> int:
        if self.refused:
            return REFUSED
        return 0 if self.succeeded else 1


outcome = CommandOutcome()
