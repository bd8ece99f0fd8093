"""Live progress of a sweep: job i of N, its configuration, elapsed time, last throughput.

A rich status line on a terminal; plain lines otherwise (logs, CI, SLURM output files).
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from sweeper.result.model import DEFAULT_UNIT, Result


@functools.cache
def _console() -> Console:
    return Console(stderr=True)  # one for the whole sweep: creating one costs per job


class JobProgress:
    def __init__(
        self, number: int | None, label: str, total: int | None = None, unit: str = DEFAULT_UNIT
    ) -> None:
        """number: the job's in its sweep (None for a single run), of total jobs (None where
        the job does not know its sweep's size: a scheduler's job)."""
        # A job is named by its number in the sweep (its directory's name) everywhere.
        if number is None:
            self.prefix = "[run]"
        else:
            self.prefix = f"[job {number} of {total}]" if total else f"[job {number}]"
        self.label = label
        self.unit = unit
        self.console = _console()
        self.live = self.console.is_terminal
        self.started = time.monotonic()
        self.last: float | None = None
        self._status: Any = None

    def __enter__(self) -> JobProgress:
        if self.live:
            self._status = self.console.status(self._text())
            self._status.__enter__()
        else:
            print(f"{self.prefix} start {self.label}", file=sys.stderr, flush=True)
        return self

    def _text(self) -> str:
        elapsed = time.monotonic() - self.started
        last = f", last {self.last:.2f} {self.unit}" if self.last is not None else ""
        return escape(f"{self.prefix} {self.label}: {elapsed:.0f} s{last}")

    def value(self, throughput: float) -> None:
        self.last = throughput
        if self._status is not None:
            self._status.update(self._text())

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)

    def done(self, result: Result, kept: bool = False) -> None:
        """The job's line: its status, its figure with the 95% interval's half-width (an ok
        run only: a failed run's figures are not its result), how long it took, or that
        resume=true kept it from the earlier run."""
        elapsed = time.monotonic() - self.started
        status = result.status.value
        figure = ""
        if result.ok and result.mean is not None:
            figure = f" {result.mean:.2f} {self.unit}"
            if result.rel_half_width is not None:
                figure += f" ±{result.rel_half_width:.1%}"
        if status == "ok" and result.marks:
            status = f"ok, {result.marks}"
        took = "kept from the earlier run (resume=true)" if kept else f"in {elapsed:.1f} s"
        reason = result.first_reason_line()
        why = f" ({reason})" if reason and not result.ok else ""
        if not self.live:  # logs, CI, SLURM output: plain text, without rich's rendering
            line = f"{self.prefix} {self.label}: {status}{figure} {took}{why}"
            print(line, file=sys.stderr, flush=True)
            return
        style = (
            "red"
            if not result.ok
            else "yellow"
            if result.unstable
            else "cyan"
            if result.wide
            else "green"
        )
        # The job's name and reason as text: "[job 3 of 8]" would read as a markup tag.
        name = escape(f"{self.prefix} {self.label}")
        line = f"{name}: [{style}]{status}[/{style}]{escape(figure)} {took}"
        self.console.print(line + escape(why), highlight=False, markup=True, soft_wrap=True)
