"""Detached sweeps: `detach=true` checks everything, then hands the sweep to a driver
process of its own and returns.

The driver is the same command, run again with the sweep's directory (hydra.sweep.dir=)
and detach=false, in a session of its own (no controlling terminal: a closed terminal's
SIGHUP never reaches it) with its output in `<sweep>/driver.log`. It takes the sweep's lock
and does all a blocking sweep does: jobs, retries, repeats, the search's rounds, the report
and the history. `<sweep>/driver.json` names it (pid, host, start, command) and, once it
has ended, its exit status: what `sweeper status` and `sweeper cancel` read.

With hydra/launcher=slurm_* the driver runs on the submitting host and submits the job
arrays from there; the jobs run in SLURM's allocations.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sweeper.process import reaper
from sweeper.result.files import write_json_atomic

DRIVER_FILE = "driver.json"
DRIVER_LOG = "driver.log"
DRIVER_ENV = "SWEEPER_DRIVER_FILE"  # set for the driver: where it records its exit status
# Overrides the driver is given anew.
_REPLACED = ("hydra.sweep.dir=", "detach=")


def driver_argv(arguments: list[str], sweep_dir: Path) -> list[str]:
    """The command that drives the sweep: the user's, into this directory, not detached."""
    kept = [a for a in arguments if not a.lstrip("+~").startswith(_REPLACED)]
    return [sys.executable, "-m", "sweeper", *kept, f"hydra.sweep.dir={sweep_dir}", "detach=false"]


def start_driver(sweep_dir: Path, arguments: list[str]) -> int:
    """Starts the sweep's driver, detached; its pid."""
    argv = driver_argv(arguments, sweep_dir.resolve())
    log = (sweep_dir / DRIVER_LOG).open("ab")
    env = {**os.environ, DRIVER_ENV: str((sweep_dir / DRIVER_FILE).resolve())}
    # Not this process's mark: the driver is a sweep of its own, not a leftover of this one
    # once it has returned (sweeper/process/reaper.py).
    env.pop(reaper.MARK_ENV, None)
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.getcwd(),
            start_new_session=True,  # no terminal: its SIGHUP and Ctrl-C are not the driver's
            close_fds=True,
        )
    finally:
        log.close()
    write_json_atomic(
        sweep_dir / DRIVER_FILE,
        {
            "pid": process.pid,
            "host": socket.gethostname(),
            # The process, not just its pid (pids are reused): reaper.mark_owner_alive.
            "mark": f"{socket.gethostname()}:{process.pid}:{reaper.start_ticks(process.pid)}",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "argv": argv,
            "log": str(sweep_dir / DRIVER_LOG),
            "exit_status": None,
        },
    )
    return process.pid


def record_exit(status: int) -> None:
    """In the driver, as it ends: its exit status, for `sweeper status`."""
    path = os.environ.get(DRIVER_ENV)
    if not path:
        return
    info = read_driver_file(Path(path)) or {}
    info.update(exit_status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json_atomic(Path(path), info)


def read_driver(sweep_dir: Path) -> dict[str, Any] | None:
    return read_driver_file(sweep_dir / DRIVER_FILE)


def read_driver_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def driver_alive(info: dict[str, Any]) -> bool | None:
    """Whether the driver still runs; None when it runs on another host (not knowable here)."""
    return reaper.mark_owner_alive(str(info.get("mark", "")))


def announce(sweep_dir: Path, pid: int) -> None:
    print(
        f"detached: the sweep goes on in the background (driver pid {pid})\n"
        f"  its directory: {sweep_dir}\n"
        f"  follow it:     sweeper status {sweep_dir} --watch   (log: {sweep_dir / DRIVER_LOG})\n"
        f"  stop it:       sweeper cancel {sweep_dir}",
        file=sys.stderr,
        flush=True,
    )
