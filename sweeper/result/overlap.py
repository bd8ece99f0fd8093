"""Jobs that measured at the same time on the same host disturb each other (Hydra's
submitit_local starts every job at once; a SLURM array without array_parallelism=1 may put
several on one node). Found from each result.json's host and start/end times; such results
are flagged unstable with the reason and the fix."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

FIX = (
    "run jobs one at a time: hydra/launcher=local, hydra.launcher.array_parallelism=1 on "
    "SLURM, or exclusive nodes"
)


def _window(result: dict[str, Any]) -> tuple[float, float] | None:
    try:
        start = time.mktime(time.strptime(str(result["started_at"]), "%Y-%m-%dT%H:%M:%S%z"))
        end = time.mktime(time.strptime(str(result["ended_at"]), "%Y-%m-%dT%H:%M:%S%z"))
    except (KeyError, ValueError):
        return None
    return start, end


def flag_overlaps(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the results, those that ran while another ran on their host flagged
    unstable (a reason naming the other job and the fix)."""
    by_host: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for i, result in enumerate(results):
        window = _window(result)
        if result.get("host") and window is not None and window[1] > window[0]:
            by_host[str(result["host"])].append((*window, i))
    overlapping: dict[int, int] = {}
    for jobs in by_host.values():
        jobs.sort()
        for k, (_, end, i) in enumerate(jobs):
            for other_start, _, j in jobs[k + 1 :]:
                if other_start >= end:
                    break
                overlapping.setdefault(i, j)
                overlapping.setdefault(j, i)
    flagged = [dict(r) for r in results]
    for i, j in overlapping.items():
        result, other = flagged[i], results[j]
        note = (
            f"unstable: measured while job {Path(str(other.get('job_dir', '?'))).name} ran on "
            f"the same host ({result['host']}); {FIX}"
        )
        result["unstable"] = True
        result["reason"] = f"{result['reason']}; {note}" if result.get("reason") else note
    return flagged
