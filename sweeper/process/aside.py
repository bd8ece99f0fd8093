"""Work done in a forked process while this one goes on: where a second core would
otherwise idle at a step nothing else overlaps (checking a sweep's jobs, drawing its plot).

The forked process starts from this one's state, so it computes what this one would; a
caller does the work itself where the fork is not to be had or the process fails.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from sweeper.process.cores import available_cores

FORK = multiprocessing.get_context("fork")
_STOPS = {signal.SIGINT, signal.SIGTERM}


def can_fork() -> bool:
    """A second core to run on, and no other thread alive in this process (a fork copies a
    lock another thread holds, an import's, and the child would wait on it forever)."""
    return hasattr(os, "fork") and available_cores() >= 2 and threading.active_count() == 1


def start(
    work: Callable[..., Any], *args: Any, name: str, daemon: bool = True
) -> BaseProcess | None:
    """`work(*args)` in a forked process (its exit status 0 when it returned); None where
    none could be started. daemon=False: one that may fork processes of its own
    (multiprocessing's rule), which this process waits for at its exit."""
    if not can_fork():
        return None
    process = FORK.Process(target=_quietly, args=(work, *args), name=name, daemon=daemon)
    # A stop that came between the fork and _quietly would find the sweep's handler in the
    # forked process, which would print the sweep's message a second time (seen: a SIGTERM
    # to the process group as the checker started). Blocked across the fork; the forked
    # process unblocks them once its own handling is set, this one at once (a stop sent
    # meanwhile is delivered then, not lost).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        process.start()
    except OSError:
        return None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return process


def succeeded(process: BaseProcess | None) -> bool:
    """Waits for it; whether it did its work (False for none)."""
    if process is None:
        return False
    process.join()
    return process.exitcode == 0


def _quietly(work: Callable[..., Any], *args: Any) -> None:
    """In the forked process: a failure is its exit status alone (the caller does the work
    again itself, and reports the error there), not a second traceback. A stop is the
    caller's to handle (the sweep's handler would print its message a second time here):
    Ctrl-C, sent to the terminal's whole process group, is ignored; SIGTERM ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # blocked by start() across the fork
    try:
        work(*args)
    except BaseException:
        os._exit(1)
