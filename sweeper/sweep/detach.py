"""Detached sweeps: `detach=true` checks everything, then hands the sweep to a driver
process of its own and returns.

The driver is the same command, run again with the sweep's directory (hydra.sweep.dir=)
and detach=false, in a session of its own (no controlling terminal: a closed terminal's
SIGHUP never reaches it) with its output in `<sweep>/driver.log`. It takes the sweep's lock
and does all a blocking sweep does: jobs, retries, repeats, the search's rounds, the report
and the history. `<sweep>/driver.json` names it (pid, host, start, command) and, once it
has ended, its exit status: what `sweeper status` and `sweeper cancel` read.

With hydra/launcher=slurm_* the driver is not a process of the submitting host: it runs as
a chain of short SLURM jobs, each submitting the next arrays and the next step with an
`afterany` dependency on them (sweeper/sweep/slurm_chain.py); driver.json then names the
chain and its current step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.history.settings import URL_ENV
from sweeper.process import reaper
from sweeper.result.files import write_json_atomic
from sweeper.sweep import slurm_chain

if TYPE_CHECKING:
    from omegaconf import DictConfig

DRIVER_FILE = "driver.json"
DRIVER_LOG = "driver.log"
DRIVER_ENV = "SWEEPER_DRIVER_FILE"  # set for the driver: where it records its exit status
# Set when this driver step left the sweep to the next step: it records no exit status.
_continued = False
# Overrides the driver is given anew.
_REPLACED = ("hydra.sweep.dir=", "detach=")


def driver_argv(arguments: list[str], sweep_dir: Path) -> list[str]:
    """The command that drives the sweep: the user's, into this directory, not detached."""
    kept = [a for a in arguments if not a.lstrip("+~").startswith(_REPLACED)]
    return [sys.executable, "-m", "sweeper", *kept, f"hydra.sweep.dir={sweep_dir}", "detach=false"]


def _driver_env(sweep_dir: Path) -> dict[str, str]:
    env = {**os.environ, DRIVER_ENV: str((sweep_dir / DRIVER_FILE).resolve())}
    # Not this process's mark: the driver is a sweep of its own, not a leftover of this one
    # once it has returned (sweeper/process/reaper.py).
    env.pop(reaper.MARK_ENV, None)
    return env


def start_driver(sweep_dir: Path, arguments: list[str]) -> int:
    """Starts the sweep's driver, detached; its pid."""
    argv = driver_argv(arguments, sweep_dir.resolve())
    log = (sweep_dir / DRIVER_LOG).open("ab")
    from sweeper.history import url as history_url

    env = _driver_env(sweep_dir)
    given = history_url.given_password()
    if given:  # taken off the command line: the driver gets it in memory, as PGPASSWORD
        env["PGPASSWORD"] = given
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


def driver_settings(config: DictConfig) -> slurm_chain.DriverSettings:
    driver = config.driver
    return slurm_chain.DriverSettings(
        partition=driver.partition or config.hydra.launcher.get("partition"),
        timeout_min=int(driver.timeout_min),
        mem_gb=float(driver.mem_gb),
        sbatch_args=[str(a) for a in driver.sbatch_args],
    )


def password_problem(config: DictConfig) -> str | None:
    """A history password the SLURM driver steps would carry in their environment (which
    SLURM keeps in files on its controller)."""
    from sweeper.history import url as history_url

    if not config.history.enabled:
        return None
    url = history_url.chosen_url(None, config.history.url)
    if url.startswith("sqlite"):
        return None
    where = [
        name
        for name, given in (
            ("the command line", history_url.given_password()),
            ("PGPASSWORD", os.environ.get("PGPASSWORD")),
            (URL_ENV, history_url.has_password(os.environ.get(URL_ENV))),
        )
        if given
    ]
    if not where:
        return None
    return (
        f"the history database's password is given in {' and '.join(where)}: a detached "
        "sweep on SLURM runs its driver as SLURM jobs, whose environment SLURM keeps in "
        "files; put the password in ~/.pgpass (chmod 600) instead, or run without detach=true"
    )


def start_slurm_driver(
    sweep_dir: Path, chain: slurm_chain.Chain, arguments: list[str], config: DictConfig
) -> str:
    """Submits the first driver step of a new chain (the lock is the chain's already);
    its SLURM job id."""
    (sweep_dir / slurm_chain.CANCEL_FILE).unlink(missing_ok=True)
    (sweep_dir / DRIVER_LOG).touch()  # to follow from now on; SLURM appends to it
    env = {**_driver_env(sweep_dir), slurm_chain.CHAIN_ENV: str(chain.path.resolve())}
    argv = driver_argv(arguments, sweep_dir.resolve())
    (sweep_dir / slurm_chain.STEP_SCRIPT).unlink(missing_ok=True)
    step = slurm_chain.submit_step(sweep_dir, argv, env, driver_settings(config))
    write_json_atomic(
        sweep_dir / DRIVER_FILE,
        {
            "kind": "slurm",
            "chain": chain.chain_id,
            "step": step,
            "steps": [step],
            "waiting_on": [],
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "argv": argv,
            "log": str(sweep_dir / DRIVER_LOG),
            "exit_status": None,
        },
    )
    return step


def continue_after(sweep_dir: Path, later: slurm_chain.ContinueLater, config: DictConfig) -> str:
    """In a driver step that submitted jobs: the next step, to run once they have ended;
    its SLURM job id."""
    global _continued
    chain = slurm_chain.current()
    assert chain is not None
    info = read_driver(sweep_dir) or {}
    env, settings = _driver_env(sweep_dir), driver_settings(config)
    step = slurm_chain.submit_step(sweep_dir, list(info["argv"]), env, settings, later.array_ids)
    info.update(step=step, steps=[*info.get("steps", []), step], waiting_on=later.array_ids)
    write_json_atomic(sweep_dir / DRIVER_FILE, info)
    _continued = True
    print(
        f"driver step {os.environ.get(slurm_chain.STEP_ENV) or '?'}: {later}; the sweep goes "
        f"on in SLURM job {step} once they have ended",
        file=sys.stderr,
        flush=True,
    )
    return step


def chain_alive(sweep_dir: Path, chain: str) -> bool | None:
    """Whether the chain of driver steps still runs (its current step waits or runs)."""
    info = read_driver(sweep_dir)
    if info is None or info.get("chain") != chain:
        return False
    return driver_alive(info)


def record_exit(status: int) -> None:
    """In the driver, as it ends: its exit status, for `sweeper status`."""
    path = os.environ.get(DRIVER_ENV)
    if not path or _continued:
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
    if info.get("kind") == "slurm":
        ended = info.get("exit_status") is not None
        return not ended and slurm_chain.job_state(str(info["step"])) is not None
    return reaper.mark_owner_alive(str(info.get("mark", "")))


def cancel_chain(sweep_dir: Path, info: dict[str, Any]) -> None:
    """`sweeper cancel` of a detached sweep on SLURM: its arrays scancel'ed; the chain's
    step, running or next, then collects them (cancelled), writes the report and ends."""
    (sweep_dir / slurm_chain.CANCEL_FILE).touch()
    record = slurm_chain.Chain.load(sweep_dir)
    slurm_chain.cancel_jobs(record.array_ids() if record else [])
    step = str(info["step"])
    if slurm_chain.job_state(step) == "RUNNING":
        slurm_chain.interrupt_step(step)


def announce(sweep_dir: Path, driver: str) -> None:
    print(
        f"detached: the sweep goes on without this terminal ({driver})\n"
        f"  its directory: {sweep_dir}\n"
        f"  follow it:     sweeper status {sweep_dir} --watch   (log: {sweep_dir / DRIVER_LOG})\n"
        f"  stop it:       sweeper cancel {sweep_dir}",
        file=sys.stderr,
        flush=True,
    )
