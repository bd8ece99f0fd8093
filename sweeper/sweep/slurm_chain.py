"""A detached sweep on SLURM runs as a chain of short driver steps, each a SLURM job of its
own: nothing of the sweep waits in the submitting shell, and no allocation is held while
the benchmark jobs run.

A step runs the sweep's own command, as a blocking sweep would, until it would wait for
SLURM: it submits the job array, records the array's jobs in `<sweep>/driver_jobs.json`,
submits the next step with `--dependency=afterany:<array>` and ends. The next step runs the
command again from the start: a job the chain submitted before is taken from the record
(its outcome and SLURM's final state, collected as a blocking sweep collects them) instead
of being submitted again, so the sweep goes on where it waited: the report and the history,
or the batch-size search's next round. Each step holds one CPU for the seconds it takes.

A step is a SLURM job, so SLURM keeps its environment in the controller's state files: no
history password may travel in it (detach.py refuses one before anything is submitted).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.process import interrupt
from sweeper.result.files import write_json_atomic

RECORD_FILE = "driver_jobs.json"
CANCEL_FILE = "cancel_requested"  # left by `sweeper cancel` for the chain's next step
STEP_SCRIPT = "driver_step.sh"
CHAIN_ENV = "SWEEPER_DRIVER_CHAIN"  # the chain's record, for every step
STEP_ENV = "SWEEPER_DRIVER_STEP"  # this step's own SLURM job id
# States in which a SLURM job has not ended (squeue's long names).
_NOT_ENDED = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUE")
# The SLURM job's variables, which would leak into the arrays and steps it submits.
_SLURM_VARIABLES = ("SLURM_", "SLURMD_", "SRUN_", "SBATCH_", "SALLOC_")


class ContinueLater(Exception):
    """A step submitted jobs: the sweep goes on in the next step, once they have ended."""

    def __init__(self, array_ids: list[str], jobs: int) -> None:
        self.array_ids, self.jobs = array_ids, jobs
        super().__init__(f"waiting for SLURM array {', '.join(array_ids)} ({jobs} job(s))")


@dataclass
class DriverSettings:
    """What one driver step asks SLURM for (the config's `driver:`)."""

    partition: str | None
    timeout_min: int
    mem_gb: float
    sbatch_args: list[str]


class Chain:
    """The chain's record: its id, the first job number of a search, and every job it
    submitted (number -> SLURM job id and overrides)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def load(cls, sweep_dir: Path) -> Chain | None:
        path = sweep_dir / RECORD_FILE
        try:
            return cls(path, json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    @property
    def chain_id(self) -> str:
        return str(self.data["chain"])

    @property
    def sweep_dir(self) -> Path:
        return self.path.parent

    def submitted(self, number: int, overrides: Sequence[str]) -> str | None:
        """The SLURM job id of job `number`, when this chain submitted it with these
        overrides."""
        entry = self.data["jobs"].get(str(number))
        if entry and entry["overrides"] == list(overrides):
            return str(entry["slurm_id"])
        return None

    def slurm_id(self, number: int) -> str:
        return str(self.data["jobs"][str(number)]["slurm_id"])

    def has_job(self, number: int) -> bool:
        return str(number) in self.data["jobs"]

    def add(self, numbered: Sequence[tuple[int, Sequence[str], str]]) -> None:
        for number, overrides, slurm_id in numbered:
            self.data["jobs"][str(number)] = {"slurm_id": slurm_id, "overrides": list(overrides)}
        self.save()

    def array_ids(self) -> list[str]:
        return sorted({str(e["slurm_id"]).split("_")[0] for e in self.data["jobs"].values()})

    def first_number(self, compute: Callable[[], int]) -> int:
        """The number a search's first job of this chain took (later steps replay from it)."""
        if self.data.get("first_number") is None:
            self.data["first_number"] = compute()
            self.save()
        return int(self.data["first_number"])

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


def start_chain(sweep_dir: Path) -> Chain:
    """A new chain for the sweep (a detached sweep, or its resume=true detach=true)."""
    chain = Chain(sweep_dir / RECORD_FILE, {"chain": uuid.uuid4().hex, "jobs": {}})
    chain.save()
    return chain


def current() -> Chain | None:
    """The chain this process is a step of, if any."""
    path = os.environ.get(CHAIN_ENV)
    return Chain.load(Path(path).parent) if path else None


def current_chain_id() -> str | None:
    chain = current()
    return chain.chain_id if chain else None


def first_job_number(compute: Callable[[], int]) -> int:
    chain = current()
    return chain.first_number(compute) if chain else compute()


def submitted_before(number: int) -> bool:
    """Whether this chain already submitted job `number` (a step replaying the sweep)."""
    chain = current()
    return chain is not None and chain.has_job(number)


def step_mark() -> str | None:
    """The mark (sweeper/process/reaper.py) a driver step gives the jobs it submits: the
    chain's, not the step's own, since a step ends while its jobs run. Its owner is no
    process of this host, so no later sweep takes the jobs for leftovers of an ended one."""
    chain = current()
    return f"slurm-chain:{chain.chain_id}:0" if chain else None


def enter_step() -> None:
    """At a step's start: its own job id kept, SLURM's variables of this job dropped (the
    arrays and the next step it submits would inherit them)."""
    record = os.environ.get(CHAIN_ENV)
    if not record:
        return
    os.environ[STEP_ENV] = os.environ.get("SLURM_JOB_ID", "")
    for name in [n for n in os.environ if n.startswith(_SLURM_VARIABLES)]:
        del os.environ[name]
    print(
        f"driver step {os.environ[STEP_ENV] or '?'} (a SLURM job) takes the sweep up",
        file=sys.stderr,
        flush=True,
    )
    if (Path(record).parent / CANCEL_FILE).exists():
        # As Ctrl-C: what ran is collected and reported, nothing new is submitted.
        interrupt.request_stop("cancelled by `sweeper cancel`", 130)


def submit_step(
    sweep_dir: Path,
    argv: list[str],
    env: dict[str, str],
    settings: DriverSettings,
    after: Sequence[str] = (),
) -> str:
    """Submits a driver step running `argv` (after the arrays `after` have ended); its id."""
    script = sweep_dir / STEP_SCRIPT
    if not script.exists():
        # sbatch wants a script: one line, exec'ing the driver's argv (quoted, not a shell
        # command of the user's), so the driver is the step's own process and gets its signals.
        script.write_text(f"#!/bin/sh\nexec {shlex.join(argv)}\n")
    command = [
        "sbatch",
        "--parsable",
        "--job-name=sweeper-driver",
        f"--output={sweep_dir / 'driver.log'}",
        "--open-mode=append",
        f"--chdir={os.getcwd()}",
        "--ntasks=1",
        "--cpus-per-task=1",
        f"--mem={max(1, round(settings.mem_gb * 1024))}M",
        f"--time={settings.timeout_min}",
        "--export=ALL",
        *([f"--partition={settings.partition}"] if settings.partition else []),
        *([f"--dependency=afterany:{':'.join(after)}"] if after else []),
        *settings.sbatch_args,
        str(script),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        from sweeper.errors import UserError  # Hydra's: not for `sweeper status`'s start

        said = (done.stderr or done.stdout).strip()
        raise UserError(
            f"the scheduler refused the sweep's driver step ({said}): "
            "set its partition, time or account with driver.partition=, driver.timeout_min=, "
            "driver.sbatch_args="
        )
    return done.stdout.strip().split(";")[0]


def job_state(job_id: str) -> str | None:
    """SLURM's state of a job that has not ended (PENDING, RUNNING, ...), else None."""
    done = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True
    )
    states = done.stdout.split() if done.returncode == 0 else []
    return next((s for s in states if s.startswith(_NOT_ENDED)), None)


def queued_jobs(chain: Chain) -> dict[int, str]:
    """The chain's jobs that have not ended: job number -> SLURM state (RUNNING, PENDING)."""
    arrays = chain.array_ids()
    if not arrays:
        return {}
    done = subprocess.run(
        ["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i %T"],
        capture_output=True,
        text=True,
    )
    states = dict(line.split() for line in done.stdout.splitlines() if len(line.split()) == 2)
    numbers = {str(e["slurm_id"]): int(n) for n, e in chain.data["jobs"].items()}
    return {numbers[i]: state for i, state in states.items() if i in numbers}


def cancel_jobs(job_ids: Sequence[str]) -> None:
    """scancel; the ones already ended are no error."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True)


def interrupt_step(job_id: str) -> None:
    """SIGINT to a running step's driver, as Ctrl-C in a terminal."""
    subprocess.run(["scancel", "--signal=INT", "--batch", job_id], capture_output=True)
