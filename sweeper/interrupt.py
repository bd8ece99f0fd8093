"""Ctrl-C and SIGTERM stop a sweep cleanly instead of with a traceback.

The first SIGINT or SIGTERM is only noted here: the runner stops the running job (every
process of it, sweeper.reaper) and records it `cancelled`, the launcher starts no further
job, and the sweep writes its report for what ran, then exits 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM). A second one ends the process at once; the guard process
still kills the jobs (sweeper/guard.py).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

_received: int | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        os._exit(128 + signum)
    _received = signum
    print(
        f"\n{signal.Signals(signum).name} received: stopping the running job and writing the "
        "report (again to stop at once)",
        file=sys.stderr,
        flush=True,
    )


def install() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def received() -> int | None:
    """The signal that asked the sweep to stop, if one did."""
    return _received


def reason() -> str:
    assert _received is not None
    return f"interrupted by {signal.Signals(_received).name}"


def exit_status() -> int | None:
    return None if _received is None else 128 + _received
