"""A sweep asked to stop before its end: Ctrl-C, SIGTERM, or a fault of its own (a full
disk). It stops cleanly instead of with a traceback.

A stop is only noted here: the runner stops the running job (every process of it,
sweeper.process.reaper) and records it `cancelled`, the launcher starts no further job, and the
sweep writes its report for what ran, then exits with the stop's status (130 for SIGINT,
143 for SIGTERM, 1 for a fault). A second signal ends the process at once; the guard process
still kills the jobs (sweeper/process/guard.py).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from types import FrameType

_reason: str | None = None
_status: int | None = None

# Errors that no job can get past: the output filesystem is full, or over quota.
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _reason is not None:
        os._exit(128 + signum)
    name = signal.Signals(signum).name
    request_stop(f"interrupted by {name}", 128 + signum)
    print(
        f"\n{name} received: stopping the running job and writing the report "
        "(again to stop at once)",
        file=sys.stderr,
        flush=True,
    )


def install() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def request_stop(reason: str, status: int = 1) -> None:
    """Stops the sweep after the running job (the first reason counts)."""
    global _reason, _status
    if _reason is None:
        _reason, _status = reason, status


def stop_requested() -> bool:
    return _reason is not None


def reason() -> str:
    assert _reason is not None
    return _reason


def exit_status() -> int | None:
    return _status


def out_of_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE


def stop_for_disk(exc: OSError) -> str:
    """Notes a full disk (or quota) as the reason to stop; returns the message."""
    where = f": {exc.filename}" if exc.filename else ""
    message = f"{exc.strerror}{where}"
    request_stop(message, 1)
    return message
