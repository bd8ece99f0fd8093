"""Jobs die with their sweep, however the sweep dies (SIGKILL included).

Every job runs in a session of its own (so a Ctrl-C or a signal to the sweep's process
group does not reach it half-way). A guard process (sweeper/process/reaper.py run as a script),
started once per sweep, is told each job's session as the job starts and ends; when the
sweep process ends or dies, the guard reads end-of-file on its pipe and kills every process
still in those sessions (OpenMPI's ranks too, which leave the job's process group) and
every process carrying the sweep's mark (sweeper.process.reaper.MARK_ENV: even one that left the
session). That costs two pipe writes per job, where setting PR_SET_PDEATHSIG in each job
cost an extra exec (setpriv, ~3 ms) or a fork instead of a vfork (preexec_fn, ~7 ms), and
reached the job's first process only.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

from sweeper.process import reaper


class JobGuard:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def _pipe(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            # The sweep's mark only if this process set it (a SLURM worker inherits the
            # submitting sweep's, shared with other jobs of that sweep).
            mark = os.environ.get(reaper.MARK_ENV, "")
            own = mark if mark == reaper.own_mark() else ""
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", reaper.__file__, own, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                # Not marked itself: it is no job, and may outlive the sweep for a moment.
                env={k: v for k, v in os.environ.items() if k != reaper.MARK_ENV},
            )
        return self.proc

    def _send(self, line: str) -> None:
        proc = self._pipe()
        assert proc.stdin is not None
        proc.stdin.write(line.encode())
        proc.stdin.flush()

    def started(self, pid: int) -> None:
        """pid leads a session (start_new_session): all of it killed if the sweep dies."""
        self._send(f"+{pid}\n")

    def ended(self, pid: int) -> None:
        self._send(f"-{pid}\n")

    def close(self) -> None:
        """At a normal exit: nothing is left to kill (every job has ended)."""
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait()


guard = JobGuard()
atexit.register(guard.close)
