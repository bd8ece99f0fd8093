"""Finding and stopping every process a job started, however it was laid out.

A job's processes cannot all be reached through its process group: OpenMPI puts each local
rank in a process group of its own (setpgid), and a killed parent's children are re-parented
to init, out of reach of a walk down the process tree. Two things they keep:
- the job's session: every job starts as a session leader (the runner's
  start_new_session, the fork server's setsid), and setpgid does not leave the session;
- the sweep's mark: SWEEPER_SWEEP_ID=<host>:<pid>:<start ticks> of the sweep process, in the
  environment every job inherits; even a daemon that calls setsid keeps it.

This module is the one way a job is stopped (its time limit, Ctrl-C, the sweep's death), and
it also runs as the guard process (`python -I -S reaper.py`, see sweeper/process/guard.py): standard
library only, /proc only (Linux).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator

MARK_ENV = "SWEEPER_SWEEP_ID"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def session_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None  # state ppid pgrp session ...


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: starttime


def mark_of(pid: int) -> str | None:
    """The sweep mark in a process's environment (as it was at exec), if any."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return None
    key = MARK_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key) :].decode(errors="replace")
    return None


def own_mark() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{start_ticks(pid)}"


def mark_owner_alive(mark: str) -> bool | None:
    """Whether the sweep that set this mark still runs; None when it ran on another host."""
    host, _, rest = mark.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    fields = _stat_fields(int(pid))
    # A zombie has ended (a container's init may be slow to reap it).
    return fields is not None and fields[0] != "Z" and fields[19] == ticks


def _pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def job_processes(
    sessions: Iterable[int], mark: str | None = None, exclude: Iterable[int] = ()
) -> list[int]:
    """Processes in one of `sessions`, or carrying `mark`, but for `exclude` and this one."""
    wanted = set(sessions)
    skip = {os.getpid(), *exclude}
    found = []
    for pid in _pids():
        if pid in skip:
            continue
        if session_of(pid) in wanted or (mark is not None and mark_of(pid) == mark):
            found.append(pid)
    return found


def orphans() -> list[tuple[int, str]]:
    """Processes of an earlier sweep on this host that outlived it: (pid, command line)."""
    found = []
    mine = os.environ.get(MARK_ENV)
    for pid in _pids():
        mark = mark_of(pid)
        if mark is None or mark == mine or mark_owner_alive(mark) is not False:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # ended meanwhile
        found.append((pid, command))
    return found


def signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def kill_all(sessions: Iterable[int], mark: str | None = None, exclude: Iterable[int] = ()) -> None:
    """SIGKILLs the processes until none is left (one may fork while the others die)."""
    sessions = set(sessions)
    for _ in range(50):
        found = job_processes(sessions, mark, exclude)
        if not found:
            return
        signal_all(found, signal.SIGKILL)
        time.sleep(0.02)


def stop(session: int, grace_s: float, exited: object = None) -> None:
    """Stops one job: SIGTERM to every process of its session (a chance to flush logs and
    end cleanly), then SIGKILL to whatever is left after grace_s. `exited()`, if given,
    ends the grace period early once the job's leader has ended."""
    signal_all(job_processes([session]), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and job_processes([session]):
        if callable(exited) and exited():
            break
        time.sleep(0.05)
    kill_all([session])


def _guard(mark: str | None, sweep_pid: int) -> None:
    """The guard process: reads `+<session>` / `-<session>` lines while the sweep runs; at
    end of input (the sweep ended, or died) kills what is left of those sessions, and of
    the sweep's mark when the sweep gave it (the sweep's own mark, not one inherited)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    running: set[int] = set()
    for line in sys.stdin:
        sign, pid = line[0], int(line[1:])
        (running.add if sign == "+" else running.discard)(pid)
    kill_all(running, mark or None, exclude=[sweep_pid])


if __name__ == "__main__":
    _guard(sys.argv[1] if len(sys.argv) > 1 else None, int(sys.argv[2]))
