"""A job's verdict — its status, the reason, and whether its figure is unstable — decided
here and nowhere else, before its result.json is final. The report, compare, the search and
the history read the verdict; none decides it again.

In the order a job meets them:
- `judge_run`: from what the job's process did and printed (the statistics'
  evaluation; then out of memory by the workload's patterns, by the job's memory cgroup or
  by the kernel's OOM killer; an interruption; output not kept).
- `after_scheduler`: a scheduler's final word on a job that ran (SLURM cancelled it or hit
  its time limit), and `lost_job` for one that left no result at all.
- `flag_overlaps`: once every job of a sweep has ended, a run that measured while another
  ran on its host is unstable (the neighbour's noise is in its figure).
"""

from __future__ import annotations

import signal
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeper.errors import first_line
from sweeper.parse.logparse import ParsedLog
from sweeper.parse.logtail import tail
from sweeper.parse.oom import oom_line, sigkill_verdict
from sweeper.result.evaluate import Evaluation, evaluate
from sweeper.result.model import JobDir, Result, Status

if TYPE_CHECKING:
    from sweeper.job.spec import JobSpec
    from sweeper.process.runner import ProcessOutcome

OVERLAP_FIX = (
    "run jobs one at a time: hydra/launcher=local, hydra.launcher.array_parallelism=1 on "
    "SLURM, or exclusive nodes"
)


@dataclass(frozen=True)
class MemoryEvidence:
    """What says a job ran out of memory besides its logs."""

    kernel_oom_kills_before: int | None  # the kernel's OOM kill count when it started
    kernel_oom_kills_after: int | None
    cgroup_oom_kills: int = 0  # kills in the job's own memory cgroup (memory_limit_gb)


def could_not_start(error: OSError, argv: list[str]) -> Evaluation:
    """The program or its directory went away after the preflight."""
    why = f"could not start: {error.strerror}: {error.filename or argv[0]}"
    return Evaluation(status=Status.FAILED, reason=why)


def judge_run(
    job: JobSpec,
    job_dir: JobDir,
    outcome: ProcessOutcome,
    memory: MemoryEvidence,
    parsed: ParsedLog,
    metrics_file_problem: str | None = None,
) -> Evaluation:
    """The verdict of one attempt, from its process's outcome and the figures read (from
    its logs, or from its metrics file)."""
    options = job.options
    detail = None
    if outcome.exit_code not in (0, None) and not outcome.timed_out:
        detail = failure_detail(job, job_dir)
    evaluation = evaluate(
        parsed,
        job.rules,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        timeout_s=options.timeout_s,
        failure_detail=detail,
        expected_instances=job.instances,
    )
    if evaluation.status == Status.NO_METRICS and metrics_file_problem:
        evaluation.reason = metrics_file_problem
    elif evaluation.status == Status.NO_METRICS and not parsed.throughput:
        evaluation.reason = f"{evaluation.reason}: {_searched(job, job_dir)}"
    if evaluation.status == Status.FAILED:
        _out_of_memory(evaluation, job, job_dir, outcome, memory)
    if outcome.interrupted:  # whatever it measured so far is not the job's result
        from sweeper.process import interrupt

        evaluation.status, evaluation.reason = Status.CANCELLED, interrupt.reason()
    if outcome.log_dropped_bytes:
        note = (
            f"output beyond log_limit_mb={options.log_limit_mb:g} not kept "
            f"({outcome.log_dropped_bytes / 1e6:.1f} MB dropped; metrics read from all of it)"
        )
        evaluation.reason = f"{evaluation.reason}; {note}" if evaluation.reason else note
    return evaluation


def _searched(job: JobSpec, job_dir: JobDir) -> str:
    """Where the figures were looked for and how: the fix is in one or the other."""
    logs = ", ".join(str(p) for p in job_dir.logs() if p.exists()) or str(job_dir.stdout)
    regexes = "; ".join(
        f"{f.name}: {f.throughput.pattern.decode(errors='replace')}" for f in job.patterns()
    )
    return f"searched {logs} for the throughput regex ({regexes}) (workload.metrics.formats)"


def _out_of_memory(
    evaluation: Evaluation,
    job: JobSpec,
    job_dir: JobDir,
    outcome: ProcessOutcome,
    memory: MemoryEvidence,
) -> None:
    """A failed run that ran out of memory is `oom` (a result: the batch does not fit)."""
    line = oom_line(job_dir.logs(), job.oom)
    if line is not None:
        evaluation.status, evaluation.reason = Status.OOM, f"out of memory: {line}"
    elif memory.cgroup_oom_kills and not outcome.interrupted:
        evaluation.status = Status.OOM
        evaluation.reason = (
            f"out of memory: over workload.memory_limit_gb={job.memory_limit_gb:g} "
            f"(killed by the kernel's OOM killer in the job's memory cgroup)"
        )
    elif outcome.exit_code == -signal.SIGKILL and not outcome.interrupted:
        killed_by_oom, why = sigkill_verdict(
            memory.kernel_oom_kills_before, memory.kernel_oom_kills_after
        )
        evaluation.reason = f"{why}: {evaluation.reason}"
        if killed_by_oom:
            evaluation.status = Status.OOM


def failure_detail(job: JobSpec, job_dir: JobDir) -> str:
    """Which instance failed (from the launcher's report) and the last lines it wrote."""
    report = tail(job_dir.stderr, 60) + "\n" + tail(job_dir.stdout, 60)
    failed = job.launcher.failed_instances(report)
    source = job_dir.instance_log(failed[0]) if failed else job_dir.stderr
    text = tail(source) if source.exists() else ""
    text = text or tail(job_dir.stderr) or tail(job_dir.stdout)
    lines = [line.strip() for line in text.splitlines() if line.strip(" -\t")][-3:]
    named = f"instance {', '.join(map(str, failed))} failed: " if failed else ""
    return named + " | ".join(lines)


def scheduler_status(state: object) -> Status:
    """What a scheduler's final state says happened to a job (a SLURM state, or an error
    carrying one in `state`); failed when it says nothing."""
    text = str(getattr(state, "state", state)).upper()
    if text.startswith("CANCELLED"):
        return Status.CANCELLED
    if text.startswith("TIMEOUT"):
        return Status.TIMEOUT
    return Status.FAILED


def after_scheduler(result: Result, state: str | None) -> bool:
    """A job whose workload died because SLURM cancelled it or hit its time limit is
    recorded as such. True when the verdict changed."""
    if state:
        result.details["scheduler_state"] = state
    verdict = scheduler_status(state or "")
    if result.ok or verdict == Status.FAILED:
        return False
    result.reason = f"SLURM ended the job ({state}): {result.reason}"
    result.status = verdict
    return True


def lost_job(error: object, choices: dict[str, object], job_dir: JobDir) -> Result:
    """A job that left no result.json (the task raised, or the scheduler lost it)."""
    return Result(
        status=scheduler_status(error),
        choices=dict(choices),
        reason=f"job error: {first_line(error)}",
        job_dir=str(job_dir.path),
    )


def flag_overlaps(results: list[Result]) -> list[Result]:
    """Marks unstable the runs that measured while another ran on their host, naming the
    other job and the fix; the runs it changed."""
    by_host: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for i, result in enumerate(results):
        window = result.window
        if result.host and window is not None and window[1] > window[0]:
            by_host[result.host].append((*window, i))
    overlapping: dict[int, int] = {}
    for jobs in by_host.values():
        jobs.sort()
        for k, (_, end, i) in enumerate(jobs):
            for other_start, _, j in jobs[k + 1 :]:
                if other_start >= end:
                    break
                overlapping.setdefault(i, j)
                overlapping.setdefault(j, i)
    changed = []
    for i, j in sorted(overlapping.items()):
        result, other = results[i], results[j]
        note = (
            f"measured while job {other.job_name} ran on the same host ({result.host}); "
            f"{OVERLAP_FIX}"
        )
        if note not in (result.reason or ""):  # a resumed sweep's kept result has it
            result.mark_unstable(note)
            changed.append(result)
    return changed
