"""The task Hydra runs for each job: run one benchmark and write its result.json.

A job never raises for a benchmark that failed: the failure is its result. That keeps
Hydra running the rest of the sweep and lets the sweep's report include every job.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sweeper.checks.preflight import check_environment, check_job, check_no_orphans
from sweeper.errors import UserError
from sweeper.history import record as history
from sweeper.job.attempt import run_attempt
from sweeper.job.outcome import outcome
from sweeper.job.progress import JobProgress
from sweeper.job.spec import JobSpec, resolve_paths
from sweeper.process import interrupt
from sweeper.result.model import JobDir, Result, Status


@dataclass(frozen=True)
class CheckedJob:
    """A job the sweep composed and checked before any job started: its run needs neither
    again. sweep_size: the jobs launched with it (for its progress line)."""

    spec: JobSpec
    sweep_size: int | None = None


def run_benchmark(cfg: DictConfig, checked: CheckedJob | None = None) -> Result:
    """The job's result. cfg: its config, read where the job was not checked before (a
    single run, a scheduler's job); a checked job's spec was built from it by the sweep."""
    if checked is not None:
        job = checked.spec
    else:  # a single run, or a scheduler's job (composed again where it runs)
        resolve_paths(cfg, HydraConfig.get().runtime.cwd)
        spec, problems = check_job(cfg)
        if spec is None:
            raise UserError(problems)
        job = spec
    if job.options.dry_run:
        print(f"# {job.label}", file=sys.stderr, flush=True)  # stdout: the command alone
        print(shlex.join(job.argv), flush=True)
        return Result(status=Status.DRY_RUN, choices=dict(job.choices), details={"argv": job.argv})

    hydra_cfg = HydraConfig.get()
    single = hydra_cfg.mode != RunMode.MULTIRUN
    if single:
        # A sweep checks every job before the first starts; a single run checks here.
        problems = check_no_orphans() + check_environment(cfg, job)
        if problems:
            raise UserError(problems)
    job_dir = JobDir(Path(hydra_cfg.runtime.output_dir))
    # hydra.job.num is `???` outside a multirun (and OmegaConf raises on reading it).
    number = None if single else int(hydra_cfg.job.num)
    total = checked.sweep_size if checked else None
    progress = JobProgress(number, job.label, total, job.unit)
    result = _kept(job, job_dir) if job.options.resume else None
    if result is not None:
        progress.done(result, kept=True)
        return result
    result = _attempts(job, job_dir, progress)
    progress.done(result)
    if single:
        outcome.report([result.status], result.ok)
        print(_run_summary(result, job_dir), flush=True)
        history.record(cfg, job_dir.path)
    return result


def _kept(job: JobSpec, job_dir: JobDir) -> Result | None:
    """resume=true: the earlier ok result of the same configuration, kept as it is (unless
    rerun_unstable=true and it is unstable or wide)."""
    previous = job_dir.read_result()
    if previous is None or not previous.ok or previous.fingerprint != job.identity:
        return None
    if job.options.rerun_unstable and (previous.unstable or previous.wide):
        return None
    previous.details["resumed"] = True
    return previous


def _attempts(job: JobSpec, job_dir: JobDir, progress: JobProgress) -> Result:
    """Up to retries+1 attempts, until one is ok; every attempt's files are kept."""
    result: Result | None = None
    for attempt in range(job.options.retries + 1):
        try:
            job_dir.keep_earlier_attempt()
            with progress:
                result = run_attempt(job, job_dir, attempt, progress)
            result.save()
        except OSError as exc:
            if not interrupt.out_of_space(exc):
                raise
            # Nothing more can be written: this job is reported from memory, as failed (its
            # figures are kept), and the sweep stops.
            why = interrupt.stop_for_disk(exc)
            result = result or Result(
                status=Status.FAILED, choices=dict(job.choices), job_dir=str(job_dir.path)
            )
            result.status, result.reason = Status.FAILED, f"result not saved: {why}"
        if result.ok or interrupt.stop_requested():
            break
    assert result is not None
    return result


def _run_summary(result: Result, job_dir: JobDir) -> str:
    """A single run's figures in one line, and where its result is."""
    stats = result.throughput or {}
    if result.ok and result.mean is not None:
        low, high, half = stats.get("ci95_low"), stats.get("ci95_high"), result.rel_half_width
        interval = (
            f" ±{half:.1%} (95% CI {low:.2f}-{high:.2f}, n={stats.get('n')})"
            if half is not None and isinstance(low, int | float) and isinstance(high, int | float)
            else f" (n={stats.get('n')}, no interval)"
        )
        figure = f"{result.mean:.2f} {result.throughput_unit}{interval}"
        if result.marks:  # the figure's caveat, on the line that shows it
            figure += f"; {result.first_reason_line()}"
    else:
        reason = result.first_reason_line()
        figure = f"{result.status}" + (f": {reason}" if reason else "")
    return f"result: {figure}; {job_dir.result}"
