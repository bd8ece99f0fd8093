"""Jobs die with their sweep, however the sweep dies (SIGKILL included).

Every job runs in a session of its own (so a Ctrl-C or a signal to the sweep's process
group does not reach it half-way). A guard process, started once per sweep, is told each
job's process group as the job starts and ends; when the sweep process dies, the guard
reads end-of-file on its pipe and kills the groups still running. That costs two pipe
writes per job, where setting PR_SET_PDEATHSIG in each job cost an extra exec (setpriv,
~3 ms) or a fork instead of a vfork (preexec_fn, ~7 ms); and it reaches every process of a
job's group (mpirun's or torchrun's children too), not only the first.
"""

from __future__ import annotations

import atexit
import subprocess
import sys

# The guard itself: standard library only, signals from the terminal ignored (it must
# outlive the sweep long enough to clean up), a process group of its own.
_GUARD = """
import os, signal, sys
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
running = set()
for line in sys.stdin:
    sign, pid = line[0], int(line[1:])
    (running.add if sign == "+" else running.discard)(pid)
for pid in running:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class JobGuard:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def _pipe(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GUARD],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.proc

    def _send(self, line: str) -> None:
        proc = self._pipe()
        assert proc.stdin is not None
        proc.stdin.write(line.encode())
        proc.stdin.flush()

    def started(self, pid: int) -> None:
        """pid leads a process group (start_new_session): killed if the sweep dies."""
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
