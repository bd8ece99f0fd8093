"""One attempt at a job: its processes started under their limits (time, memory, log size),
followed to their end, and their outcome handed to the verdict (sweeper/result/verdict.py);
the attempt's Result."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from sweeper.job.environment import environment
from sweeper.job.identity import package_versions
from sweeper.job.progress import JobProgress
from sweeper.job.spec import JobSpec
from sweeper.launchers import RENDEZVOUS_ENV
from sweeper.parse.logparse import ParsedLog
from sweeper.parse.metrics_file import MetricsFileError
from sweeper.parse.oom import kernel_oom_kills
from sweeper.process import interrupt, memory_cgroup
from sweeper.process.runner import ProcessOutcome, run_command
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


def run_attempt(job: JobSpec, job_dir: JobDir, attempt: int, progress: JobProgress) -> Result:
    env = dict(job.env)
    rendezvous = None
    if job.launcher.needs_rendezvous:
        rendezvous = job_dir.rendezvous(attempt)
        env[RENDEZVOUS_ENV] = str(rendezvous)
    oom_kills_before = kernel_oom_kills()
    limit = _MemoryLimit(memory_cgroup.create(job.memory_limit_gb) if job.memory_limit_gb else None)
    if limit.cgroup is not None:
        env[memory_cgroup.CGROUP_ENV] = str(limit.cgroup.path)
    try:
        outcome = run_command(
            job.argv,
            job_dir.path,
            job.patterns(),
            env=env,
            cwd=job.cwd or str(job_dir.path),  # a program's own files land in its job directory
            timeout_s=job.options.timeout_s,
            on_value=progress.value,
            split_instances=job.instances > 1,
            warm_start=job.warm_start,
            log_limit_bytes=job.options.log_limit_bytes,
        )
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
