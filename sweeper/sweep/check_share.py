"""A forked process checks the later part of a large sweep's jobs while this one checks
the earlier part.

Checking a job (its values, command line, launcher, identity, and what this machine must
have for it: sweeper.checks.preflight) walks its composed config through OmegaConf, some
milliseconds a job, and every job is checked before the first one starts. Where a second
core is free, a process forked from this one composes and checks the jobs of the sweep's
later part while this one composes and checks the earlier part, and takes the other's
answers (the job's problems, JobSpec, this machine's problems, and the job's overrides and
resolved values) at the end; this process composes those jobs again only as they come to
run (sweeper.where.SweepJob.config). The forked process starts from this one's state
(Hydra's context, the composer's cache), so its answers are those this process would give;
if it fails in any way, this process composes and checks those jobs itself.
"""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sweeper.job.spec import JobSpec
from sweeper.process import aside

# Below this many jobs the fork costs about what it saves.
MIN_JOBS = 24
# The forked process's share: each process composes and checks its own jobs, and this one
# takes the other's answers. Measured over a 200-job sweep, five interleaved runs each: the
# checks ended at 0.90 s (median) with 0.6, 0.93 s with 0.55 and with 0.65.
SHARE = 0.6
# Its share where this one also does the caller's `meanwhile` work (importing SciPy with
# NumPy, 0.15 s) first: a 200-job sweep's first job started at 0.72 s (median of eight)
# with 0.75 and with 0.7, 0.74 with 0.65, 0.75 with 0.8.
SHARE_BESIDE_WORK = 0.75

# A job's spec (None: problems), its problems, and this machine's problems with it (None:
# not looked for: sweeper.sweep.jobs.machine_problems).
Checked = tuple[JobSpec | None, list[str], list[str] | None]
# A job checked there, its config's resolver cache there (values such as ${now:...},
# resolved once per config: this process's copy takes them, so that both agree), and its
# overrides as composed there (its default data given).
Answer = tuple[Checked, dict[str, Any], list[str]]


class CheckShare:
    """Jobs numbered from `first` on, checked by a forked process (check_later(num), run
    there, returns None where the job does not compose: this process reports that)."""

    def __init__(self, first: int, reader: Connection, process: BaseProcess) -> None:
        self.first = first
        self._reader = reader
        self._process = process
        self._answers: dict[int, Answer | None] | None = None

    @classmethod
    def start(
        cls, jobs: int, check_later: Callable[[int], Answer | None], beside_work: bool = False
    ) -> CheckShare | None:
        """A share for a sweep of this many jobs (beside_work: this process has other work
        to do meanwhile); None where it would not pay (a small sweep) or no process can be
        forked (sweeper.process.aside)."""
        if jobs < MIN_JOBS:
            return None
        first = jobs - int(jobs * (SHARE_BESIDE_WORK if beside_work else SHARE))
        reader, writer = aside.FORK.Pipe(duplex=False)
        process = aside.start(
            _check_and_send, check_later, range(first, jobs), writer, name="sweeper-check-share"
        )
        writer.close()  # the child's end: a child that dies leaves EOF, not a wait
        if process is None:
            reader.close()
            return None
        return cls(first, reader, process)

    def answer(self, num: int) -> Answer | None:
        """The forked process's answer for this job; None where it gave none."""
        if self._answers is None:
            self._answers = self._receive()
        return self._answers.get(num)

    def _receive(self) -> dict[int, Answer | None]:
        try:
            answers = self._reader.recv()
        except (EOFError, OSError):  # it died: this process checks its jobs
            answers = {}
        finally:
            self._reader.close()
            aside.succeeded(self._process)
        return answers if isinstance(answers, dict) else {}


def _check_and_send(check: Callable[[int], Answer | None], nums: range, writer: Any) -> None:
    answers: dict[int, Answer | None] = {}
    for num in nums:
        try:
            answers[num] = check(num)
        except Exception:  # this process checks that job again, and reports what fails
            continue
    writer.send(answers)
    writer.close()
