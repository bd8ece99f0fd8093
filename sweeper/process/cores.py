"""The CPU cores this process may run on (its affinity: a SLURM allocation's or taskset's
share, not the machine's count)."""

from __future__ import annotations

import os


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
