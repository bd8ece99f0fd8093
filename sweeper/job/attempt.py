"""One attempt at a job: its processes started under their limits (time, memory, log size),
followed to their end, and their outcome handed to the verdict (sweeper/result/verdict.py);
the attempt's Result. A job's first attempt may be started early (start_early): the moment
the job before it has ended, while that job's result is judged and saved."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

from sweeper.job.environment import environment
from sweeper.job.identity import package_versions
from sweeper.job.progress import JobProgress
from sweeper.job.spec import JobSpec
from sweeper.launchers import RENDEZVOUS_ENV
from sweeper.parse.logparse import ParsedLog
from sweeper.parse.metrics_file import MetricsFileError
from sweeper.parse.oom import kernel_oom_kills
from sweeper.process import interrupt, memory_cgroup
from sweeper.process.runner import (
    ProcessOutcome,
    RunningJob,
    abandon,
    follow_command,
    start_command,
)
from sweeper.result import efficiency, verdict
from sweeper.result.evaluate import Evaluation
from sweeper.result.model import JobDir, Result, iso_time


@dataclass
class _MemoryLimit:
    """The job's memory cgroup (workload.memory_limit_gb on the CPU), if it has one."""

    cgroup: memory_cgroup.MemoryCgroup | None
    oom_kills: int = 0
    peak_bytes: int | None = None

    def close(self) -> None:
        """Its figures read, then the cgroup removed."""
        if self.cgroup is not None:
            self.oom_kills = self.cgroup.oom_kills()
            self.peak_bytes = self.cgroup.peak_bytes()
            self.cgroup.remove()


def can_start_early(job: JobSpec) -> bool:
    """Whether the job's first attempt may be started before its turn (start_early): one
    that runs as it is, with nothing to set up or decide first (no earlier result kept by
    resume=true, no rendezvous or memory cgroup of its own), and not a dry run."""
    return not (
        job.options.dry_run
        or job.options.resume
        or job.launcher.needs_rendezvous
        or job.memory_limit_gb is not None
    )


@dataclass
class _StartedEarly:
    running: RunningJob
    oom_kills_before: int | None  # the kernel's count as it started


# The next job's first attempt, started early; its own run_attempt takes it.
_started_early: _StartedEarly | None = None


def start_early(job: JobSpec, job_dir: JobDir) -> None:
    """Starts the job's first attempt now, the moment the job before it has ended, and
    not after that job's bookkeeping (its result judged and saved): a sweep of short jobs
    runs back to back. Only for a job can_start_early allows."""
    global _started_early
    discard_early()
    job_dir.keep_earlier_attempt()  # as its attempt would, before its logs are written
    oom_kills_before = kernel_oom_kills()
    running = start_command(job.argv, job_dir.path, job.patterns(), **_command_args(job, job_dir))
    _started_early = _StartedEarly(running, oom_kills_before)


def discard_early() -> None:
    """The job started early will not run after all (the sweep stopped): it is ended
    (nothing was measured yet) and the logs it began are removed; it is not run."""
    global _started_early
    early, _started_early = _started_early, None
    if early is None:
        return
    running = early.running
    abandon(running)
    begun = [running.out.log_path, running.err.log_path]
    for path in begun + JobDir(running.job_dir).instance_logs():
        with contextlib.suppress(OSError):
            path.unlink()


def _take_early(job: JobSpec, job_dir: JobDir) -> _StartedEarly | None:
    global _started_early
    early = _started_early
    if early is None:
        return None
    if early.running.argv != job.argv or early.running.job_dir != job_dir.path:
        discard_early()  # not this job's (not expected: the launcher starts the next one)
        return None
    _started_early = None
    return early


def _command_args(job: JobSpec, job_dir: JobDir) -> dict[str, Any]:
    """start_command's settings for this job, bar its environment's additions."""
    return {
        "env": dict(job.env),
        "cwd": job.cwd or str(job_dir.path),  # a program's own files land in its job directory
        "split_instances": job.instances > 1,
        "warm_start": job.warm_start,
        "log_limit_bytes": job.options.log_limit_bytes,
    }


def run_attempt(job: JobSpec, job_dir: JobDir, attempt: int, progress: JobProgress) -> Result:
    early = _take_early(job, job_dir) if attempt == 0 else None
    settings = _command_args(job, job_dir)
    rendezvous = None
    if job.launcher.needs_rendezvous:
        rendezvous = job_dir.rendezvous(attempt)
        settings["env"][RENDEZVOUS_ENV] = str(rendezvous)
    oom_kills_before = early.oom_kills_before if early is not None else kernel_oom_kills()
    limit = _MemoryLimit(memory_cgroup.create(job.memory_limit_gb) if job.memory_limit_gb else None)
    if limit.cgroup is not None:
        settings["env"][memory_cgroup.CGROUP_ENV] = str(limit.cgroup.path)
    try:
        if early is not None:
            running = early.running
        else:
            running = start_command(job.argv, job_dir.path, job.patterns(), **settings)
        outcome = follow_command(running, timeout_s=job.options.timeout_s, on_value=progress.value)
    except OSError as exc:  # the program or its directory went away after the preflight
        limit.close()
        if interrupt.out_of_space(exc):
            raise  # its logs could not be created: the sweep stops (run_benchmark)
        now = time.time()
        return _result(
            job, job_dir, attempt, verdict.could_not_start(exc, job.argv), None, now, now
        )
    limit.close()
    if rendezvous is not None:
        rendezvous.unlink(missing_ok=True)
    evaluation = _judge(job, job_dir, outcome, limit, oom_kills_before)
    result = _result(
        job, job_dir, attempt, evaluation, outcome.exit_code, outcome.started_at, outcome.ended_at
    )
    if result.ok:
        logged_work, logged_limit = efficiency.from_logs(job_dir.logs())
        result.details["efficiency"] = efficiency.efficiency(
            result.throughput, job.work or logged_work, job.limit or logged_limit
        )
    if job.memory_limit_gb is not None:
        mechanism = (
            limit.cgroup.mechanism if limit.cgroup is not None else memory_cgroup.ADDRESS_SPACE
        )
        memory: dict[str, object] = {"gb": job.memory_limit_gb, "mechanism": mechanism}
        if limit.peak_bytes is not None:  # how near the limit the job came
            memory["peak_gb"] = round(limit.peak_bytes / (1 << 30), 4)
        result.details["memory_limit"] = memory
    return result


def _judge(
    job: JobSpec,
    job_dir: JobDir,
    outcome: ProcessOutcome,
    limit: _MemoryLimit,
    oom_kills_before: int | None,
) -> Evaluation:
    parsed, file_problem = outcome.parsed, None
    if job.metrics_file is not None:
        try:
            parsed = job.metrics_file.read(job_dir.path, job.patterns())
        except MetricsFileError as exc:
            parsed, file_problem = ParsedLog(), str(exc)
    memory = verdict.MemoryEvidence(
        kernel_oom_kills_before=oom_kills_before,
        kernel_oom_kills_after=kernel_oom_kills(),
        cgroup_oom_kills=limit.oom_kills,
    )
    return verdict.judge_run(job, job_dir, outcome, memory, parsed, file_problem)


def _result(
    job: JobSpec,
    job_dir: JobDir,
    attempt: int,
    evaluation: Evaluation,
    exit_code: int | None,
    started_at: float,
    ended_at: float,
) -> Result:
    """An attempt's result.json."""
    judged = evaluation.to_dict()
    return Result(
        status=evaluation.status,
        choices=dict(job.choices),
        reason=evaluation.reason,
        unstable=evaluation.unstable,
        wide=evaluation.wide,
        throughput=judged.pop("throughput"),
        latency_ms=judged.pop("latency_ms"),
        job_dir=str(job_dir.path),
        host=socket.gethostname(),
        started_at=iso_time(started_at),
        ended_at=iso_time(ended_at),
        fingerprint=job.identity,
        repeat=job.options.repeat,
        unit=job.unit,
        latency_unit=job.latency_unit,
        attempt=attempt + 1,
        details={
            "instances_reporting": judged["instances_reporting"],
            "format": judged["format"],
            "combined": judged["combined"],
            "measurement": judged["measurement"],
            "per_instance": judged["per_instance"],
            "argv": job.argv,
            "cwd": job.cwd,
            "exit_code": exit_code,
            "elapsed_s": round(ended_at - started_at, 3),
            "versions": dict(package_versions()),
            "environment": environment(job.argv, job.cwd),
        },
    )
