"""The task Hydra runs for each job: run one benchmark and write its result.json.

A job never raises for a benchmark that failed: the failure is its result. That keeps
Hydra running the rest of the sweep and lets the sweep's report include every job.
"""

from __future__ import annotations

import shlex
import signal
import socket
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from launchers import RENDEZVOUS_ENV
from sweeper.checks.preflight import check_environment, check_job, check_no_orphans
from sweeper.errors import UserError
from sweeper.history import record as history
from sweeper.job.environment import environment
from sweeper.job.progress import JobProgress
from sweeper.job.spec import JobSpec, resolve_paths
from sweeper.parse.logparse import ParsedLog
from sweeper.parse.metrics_file import MetricsFileError
from sweeper.parse.oom import kernel_oom_kills, oom_line, sigkill_verdict
from sweeper.process import interrupt, memory_cgroup
from sweeper.process.runner import run_command, tail
from sweeper.result.evaluate import (
    CANCELLED,
    FAILED,
    NO_METRICS,
    OK,
    OOM,
    Evaluation,
    evaluate,
)
from sweeper.result.store import (
    RESULT_FILE,
    choices,
    fingerprint,
    package_versions,
    read_result,
    write_json_atomic,
)

# Files of an earlier attempt kept aside, never overwritten, when a job runs again.
_ATTEMPT_FILES = (RESULT_FILE, "stdout.log", "stderr.log")


# A single run's status, for the exit status (hydra.main does not return the task's value).
single_run_status: str | None = None

# Jobs prepared ahead of their run: the task's config (kept, so that its id stays its
# own), its command and its identity.
_prepared: dict[int, tuple[DictConfig, JobSpec, str]] = {}


def prepare_benchmark(cfg: DictConfig) -> None:
    """Builds and checks a job's command and identity ahead of its run, which then skips
    that work: the local launcher calls this while the previous job runs. Uses nothing but
    cfg (not HydraConfig, which is still the previous job's)."""
    job, problems = check_job(cfg)
    if job is not None and not problems:
        _prepared[id(cfg)] = (cfg, job, fingerprint(cfg))


def run_benchmark(cfg: DictConfig) -> dict[str, Any]:
    ahead = _prepared.pop(id(cfg), None)
    if ahead is not None and ahead[0] is cfg:
        _, job, identity = ahead
    else:
        resolve_paths(cfg, HydraConfig.get().runtime.cwd)
        spec, problems = check_job(cfg)
        if spec is None:
            raise UserError(problems)
        job, identity = spec, fingerprint(cfg)
    if cfg.dry_run:
        print(shlex.join(job.argv), flush=True)
        return {"status": "dry-run", "argv": job.argv}

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        # A sweep checks every job before the first starts; a single run checks here.
        problems = check_no_orphans() + check_environment(cfg, job)
        if problems:
            raise UserError(problems)
    job_dir = Path(hydra_cfg.runtime.output_dir)
    label = " ".join(f"{k}={v}" for k, v in choices(cfg).items())
    # hydra.job.num is `???` outside a multirun (and OmegaConf raises on reading it).
    number = int(hydra_cfg.job.num) if hydra_cfg.mode == RunMode.MULTIRUN else None
    progress = JobProgress(number, label)

    if cfg.resume:
        previous = read_result(job_dir)
        rerun = cfg.rerun_unstable and previous and previous.get("unstable")
        if (
            previous
            and previous.get("status") == OK
            and previous.get("fingerprint") == identity
            and not rerun
        ):
            previous["resumed"] = True
            progress.done("ok", (previous.get("throughput") or {}).get("mean"), "resumed")
            return previous

    result: dict[str, Any] = {}
    for attempt in range(int(cfg.retries) + 1):
        try:
            _keep_earlier_attempt(job_dir)
            with progress:
                result = _run_once(cfg, job, job_dir, identity, attempt, progress)
            write_json_atomic(job_dir / RESULT_FILE, result)
        except OSError as exc:
            if not interrupt.out_of_space(exc):
                raise
            # Nothing more can be written: this job is reported from memory, as failed (its
            # figures are kept), and the sweep stops.
            why = interrupt.stop_for_disk(exc)
            result = result or {**choices(cfg), "job_dir": str(job_dir)}
            result["status"], result["reason"] = FAILED, f"result not saved: {why}"
        if result["status"] == OK or interrupt.stop_requested():
            break
    throughput = (result.get("throughput") or {}).get("mean")
    progress.done(result["status"], throughput, result.get("reason"))
    if hydra_cfg.mode != RunMode.MULTIRUN:
        global single_run_status
        single_run_status = result["status"]
        print(_run_summary(result, job_dir / RESULT_FILE), flush=True)
        history.record(cfg, job_dir)
    return result


def _run_summary(result: dict[str, Any], path: Path) -> str:
    """A single run's figures in one line, and where its result is."""
    stats = result.get("throughput") or {}
    if result.get("status") == OK and stats:
        low, high = stats.get("ci95_low"), stats.get("ci95_high")
        interval = (
            f" (95% CI {low:.2f}-{high:.2f}, n={stats.get('n')})"
            if isinstance(low, float) and isinstance(high, float) and high == high
            else ""
        )
        figure = f"{stats['mean']:.2f} samples/s{interval}"
    else:
        reason = (result.get("reason") or "").splitlines()
        figure = f"{result.get('status')}" + (f": {reason[0]}" if reason else "")
    return f"result: {figure}; {path}"


def _run_once(
    cfg: DictConfig,
    job: JobSpec,
    job_dir: Path,
    identity: str,
    attempt: int,
    progress: JobProgress,
) -> dict[str, Any]:
    env = dict(job.env)
    rendezvous = None
    if job.launcher.needs_rendezvous:
        rendezvous = job_dir / f".rendezvous-{attempt + 1}-{time.time_ns()}"
        env[RENDEZVOUS_ENV] = str(rendezvous)
    oom_kills = kernel_oom_kills()
    cgroup = memory_cgroup.create(job.memory_limit_gb) if job.memory_limit_gb else None
    if cgroup is not None:
        env[memory_cgroup.CGROUP_ENV] = str(cgroup.path)
    try:
        outcome = run_command(
            job.argv,
            job_dir,
            job.patterns(),
            env=env,
            cwd=job.cwd or str(job_dir),  # a program's own files land in its job directory
            timeout_s=cfg.timeout_s,
            on_value=progress.value,
            split_instances=job.instances > 1,
            warm_start=job.warm_start,
            log_limit_bytes=None if cfg.log_limit_mb is None else int(cfg.log_limit_mb * 1e6),
        )
    except OSError as exc:  # the program or its directory went away after the preflight
        if cgroup is not None:
            cgroup.remove()
        if interrupt.out_of_space(exc):
            raise  # its logs could not be created: the sweep stops (run_benchmark)
        now = time.time()
        why = f"could not start: {exc.strerror}: {exc.filename or job.argv[0]}"
        evaluation = Evaluation(status=FAILED, reason=why)
        return _record(cfg, job, job_dir, identity, attempt, evaluation, None, now, now)
    cgroup_oom_kills = cgroup.oom_kills() if cgroup is not None else 0
    cgroup_peak = cgroup.peak_bytes() if cgroup is not None else None
    if cgroup is not None:
        cgroup.remove()
    if rendezvous is not None:
        rendezvous.unlink(missing_ok=True)
    detail = None
    if outcome.exit_code not in (0, None) and not outcome.timed_out:
        detail = _failure_detail(job, job_dir)
    parsed, file_problem = outcome.parsed, None
    if job.metrics_file is not None:
        try:
            parsed = job.metrics_file.read(job_dir, job.patterns())
        except MetricsFileError as exc:
            parsed, file_problem = ParsedLog(), str(exc)
    evaluation = evaluate(
        parsed,
        job.rules,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        timeout_s=cfg.timeout_s,
        failure_detail=detail,
        expected_instances=job.instances,
    )
    if evaluation.status == NO_METRICS and file_problem:
        evaluation.reason = file_problem
    if evaluation.status == FAILED:
        logs = [
            job_dir / "stderr.log",
            job_dir / "stdout.log",
            *sorted(job_dir.glob("instance-*.log")),
        ]
        line = oom_line(logs, job.oom)
        if line is not None:
            evaluation.status, evaluation.reason = OOM, f"out of memory: {line}"
        elif cgroup_oom_kills and not outcome.interrupted:
            evaluation.status = OOM
            evaluation.reason = (
                f"out of memory: over workload.memory_limit_gb={job.memory_limit_gb:g} "
                f"(killed by the kernel's OOM killer in the job's memory cgroup)"
            )
        elif outcome.exit_code == -signal.SIGKILL and not outcome.interrupted:
            killed_by_oom, why = sigkill_verdict(oom_kills, kernel_oom_kills())
            evaluation.reason = f"{why}: {evaluation.reason}"
            if killed_by_oom:
                evaluation.status = OOM
    if outcome.interrupted:  # whatever it measured so far is not the job's result
        evaluation.status, evaluation.reason = CANCELLED, interrupt.reason()
    if outcome.log_dropped_bytes:
        note = (
            f"output beyond log_limit_mb={cfg.log_limit_mb:g} not kept "
            f"({outcome.log_dropped_bytes / 1e6:.1f} MB dropped; metrics read from all of it)"
        )
        evaluation.reason = f"{evaluation.reason}; {note}" if evaluation.reason else note
    record = _record(
        cfg,
        job,
        job_dir,
        identity,
        attempt,
        evaluation,
        outcome.exit_code,
        outcome.started_at,
        outcome.ended_at,
    )
    if job.memory_limit_gb is not None:
        mechanism = cgroup.mechanism if cgroup is not None else memory_cgroup.ADDRESS_SPACE
        record["memory_limit"] = {"gb": job.memory_limit_gb, "mechanism": mechanism}
        if cgroup_peak is not None:  # how near the limit the job came
            record["memory_limit"]["peak_gb"] = round(cgroup_peak / (1 << 30), 4)
    return record


def _record(
    cfg: DictConfig,
    job: JobSpec,
    job_dir: Path,
    identity: str,
    attempt: int,
    evaluation: Evaluation,
    exit_code: int | None,
    started_at: float,
    ended_at: float,
) -> dict[str, Any]:
    """A run's result.json."""
    return {
        **choices(cfg),
        **evaluation.to_dict(),
        "argv": job.argv,
        "cwd": job.cwd,
        "exit_code": exit_code,
        "attempt": attempt + 1,
        "repeat": int(cfg.repeat),
        "started_at": _iso(started_at),
        "ended_at": _iso(ended_at),
        "elapsed_s": round(ended_at - started_at, 3),
        "host": socket.gethostname(),
        "fingerprint": identity,
        "versions": dict(package_versions()),
        "environment": environment(job.argv, job.cwd),
        "job_dir": str(job_dir),
    }


def _failure_detail(job: JobSpec, job_dir: Path) -> str:
    """Which instance failed (from the launcher's report) and the last lines it wrote."""
    report = tail(job_dir / "stderr.log", 60) + "\n" + tail(job_dir / "stdout.log", 60)
    failed = job.launcher.failed_instances(report)
    source = job_dir / f"instance-{failed[0]}.log" if failed else job_dir / "stderr.log"
    text = tail(source) if source.exists() else ""
    text = text or tail(job_dir / "stderr.log") or tail(job_dir / "stdout.log")
    lines = [line.strip() for line in text.splitlines() if line.strip(" -\t")][-3:]
    named = f"instance {', '.join(map(str, failed))} failed: " if failed else ""
    return named + " | ".join(lines)


def _keep_earlier_attempt(job_dir: Path) -> None:
    """Moves an earlier attempt's result and logs to attempts/<n>/ (nothing is lost)."""
    if not (job_dir / RESULT_FILE).exists():
        return
    n = 1
    while (job_dir / "attempts" / str(n)).exists():
        n += 1
    target = job_dir / "attempts" / str(n)
    target.mkdir(parents=True)
    for name in _ATTEMPT_FILES:
        if (job_dir / name).exists():
            (job_dir / name).rename(target / name)
    for log in job_dir.glob("instance-*.log"):
        log.rename(target / log.name)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
