"""Runs one job's command: logs to files, a time limit that kills every instance, live
metric extraction while it runs."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil

from sweeper.parse.logparse import (
    UNTAGGED,
    MetricExtractor,
    MetricPatterns,
    ParsedLog,
)
from sweeper.process import forkserver, interrupt, reaper
from sweeper.process.forkserver import ForkedProcess
from sweeper.process.guard import guard
from sweeper.process.logpipe import LogPipe
from sweeper.result.model import JobDir

POLL_S = 0.25
TERM_GRACE_S = 5.0


class _Hooks:
    """Work to do at a point of the next job's run, in this thread."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def add(self, work: Callable[[], None]) -> None:
        self.pending.append(work)

    def run(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    def clear(self) -> None:
        self.pending.clear()


# Right after the job's process has started, while it starts up (the local launcher writes
# the following job's directory then, rather than between jobs).
while_job_runs = _Hooks()
# Right after the job's process has ended, before its logs are read to the end and judged
# (the local launcher starts the following job's process then: sweeper.job.attempt's
# start_early).
when_job_ends = _Hooks()


@dataclass
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool
    interrupted: bool  # stopped because the sweep was (Ctrl-C, SIGTERM)
    started_at: float
    ended_at: float
    parsed: ParsedLog
    log_dropped_bytes: int = 0  # output beyond the log limit, not kept


class _InstanceLogs:
    """Writes each instance's reassembled lines to instance-<rank>.log in the job directory."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.files: dict[int, BinaryIO] = {}

    def __call__(self, rank: int, block: bytes) -> None:
        if rank == UNTAGGED:
            return
        if rank not in self.files:
            self.files[rank] = open(JobDir(self.job_dir).instance_log(rank), "ab")  # noqa: SIM115
        self.files[rank].write(block)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _family(pid: int) -> list[psutil.Process]:
    """A process and all its descendants, found before any of them dies (a killed parent's
    children would be re-parented and lost)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_family(family: list[psutil.Process], sig: int) -> None:
    for proc in family:
        try:
            proc.send_signal(sig)  # psutil checks that the pid is still that process
        except psutil.NoSuchProcess:
            pass


@dataclass
class RunningJob:
    """A job's process, started and not yet followed to its end."""

    argv: list[str]
    job_dir: Path
    proc: subprocess.Popen[bytes] | ForkedProcess
    out: LogPipe
    err: LogPipe
    sink: _InstanceLogs | None
    started: float  # when the process was started: the job's own time starts then


def start_command(
    argv: list[str],
    job_dir: Path,
    patterns: list[MetricPatterns],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    split_instances: bool = False,
    warm_start: bool = False,
    log_limit_bytes: int | None = None,
) -> RunningJob:
    """Starts argv (never through a shell) with stdout/stderr going to job_dir; each log
    keeps at most log_limit_bytes (sweeper.process.logpipe). warm_start: start `python -m
    sweeper.workload` from the fork server (sweeper.process.forkserver) instead of a fresh
    interpreter; a fresh one if the server cannot."""
    job_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    sink = _InstanceLogs(job_dir) if split_instances else None
    named = warm_start and forkserver.is_workload_command(argv)  # the fork server's job
    # Metrics printed on stderr (e.g. through a logging module) count too.
    out = LogPipe(JobDir(job_dir).stdout, log_limit_bytes, MetricExtractor(patterns, sink), named)
    err = LogPipe(JobDir(job_dir).stderr, log_limit_bytes, MetricExtractor(patterns, sink), named)
    try:
        proc = _start(argv, out, err, cwd, full_env)
    except BaseException:
        out.close()
        err.close()
        raise
    # The job's own time starts now: not a fork server's start (torch's import).
    started = time.time()
    guard.started(proc.pid)
    return RunningJob(argv, job_dir, proc, out, err, sink, started)


def run_command(
    argv: list[str],
    job_dir: Path,
    patterns: list[MetricPatterns],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout_s: float | None = None,
    on_value: Callable[[float], None] | None = None,
    split_instances: bool = False,
    warm_start: bool = False,
    log_limit_bytes: int | None = None,
) -> ProcessOutcome:
    """Runs argv (start_command's arguments) to its end (follow_command)."""
    running = start_command(
        argv,
        job_dir,
        patterns,
        env=env,
        cwd=cwd,
        split_instances=split_instances,
        warm_start=warm_start,
        log_limit_bytes=log_limit_bytes,
    )
    return follow_command(running, timeout_s=timeout_s, on_value=on_value)


def follow_command(
    running: RunningJob,
    *,
    timeout_s: float | None = None,
    on_value: Callable[[float], None] | None = None,
) -> ProcessOutcome:
    """Follows a started job to its end: its logs written and parsed as it runs, stopped
    when its time is up or the sweep is interrupted."""
    proc, out, err = running.proc, running.out, running.err
    try:
        try:
            while_job_runs.run()
            stopped_by = _follow(proc, out, err, running.started, timeout_s, on_value)
        finally:
            if proc.returncode is not None:  # ended and reaped: nothing left to kill
                guard.ended(proc.pid)
        when_job_ends.run()
        out.pump()
        err.pump()
    finally:
        out.close()
        err.close()
    parsed = out.extractor.finish()
    _merge(parsed, err.extractor.finish())
    if running.sink is not None:
        running.sink.close()
    return ProcessOutcome(
        exit_code=proc.returncode,
        timed_out=stopped_by == "timeout",
        interrupted=stopped_by == "interrupt",
        started_at=running.started,
        ended_at=time.time(),
        parsed=parsed,
        log_dropped_bytes=out.dropped + err.dropped,
    )


def abandon(running: RunningJob) -> None:
    """Ends a started job that will not be followed (a job started early whose sweep
    stopped: nothing measured yet), as any job is ended (terminate); its logs closed."""
    try:
        terminate(running.proc)
    finally:
        guard.ended(running.proc.pid)
        running.out.close()
        running.err.close()
        if running.sink is not None:
            running.sink.close()


def _follow(
    proc: subprocess.Popen[bytes] | ForkedProcess,
    out: LogPipe,
    err: LogPipe,
    started: float,
    timeout_s: float | None,
    on_value: Callable[[float], None] | None,
) -> str | None:
    """Reads the job's output as it runs, until it ends; stops it when its time is up or
    the sweep is interrupted. Returns why it was stopped ("timeout", "interrupt"), if it was."""
    stopped_by: str | None = None
    exited = _ExitWatch(proc)
    last_count = 0
    while True:
        finished = exited.wait(POLL_S, (out.fd, err.fd))
        out.pump()
        err.pump()
        if on_value is not None:
            values = [v for series in out.extractor.result.throughput.values() for v in series]
            if len(values) != last_count:
                last_count = len(values)
                on_value(values[-1])
        if finished:
            break
        if timeout_s is not None and time.time() - started > timeout_s:
            stopped_by = "timeout"
            terminate(proc)
        elif interrupt.stop_requested():
            stopped_by = "interrupt"
            terminate(proc)
    exited.close()
    return stopped_by


def _start(
    argv: list[str],
    out: LogPipe,
    err: LogPipe,
    cwd: str | None,
    env: dict[str, str],
) -> subprocess.Popen[bytes] | ForkedProcess:
    if out.fifo is not None and err.fifo is not None:  # named: for the fork server
        try:
            server = forkserver.warm_server(env, os.getcwd(), forkserver.ForkServer.command())
            # The child opens its output pipes itself, by name.
            return server.spawn(forkserver.WORKLOAD_MODULE, argv[3:], out.fifo, err.fifo, cwd, env)
        except forkserver.ForkServerError as exc:
            err.note(f"[sweeper] fork server unavailable ({exc}); fresh process\n")
    stdout, stderr = out.writer(), err.writer()
    try:
        return subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own session, which the guard kills with the sweep
        )
    finally:
        os.close(stdout)
        os.close(stderr)


class _ExitWatch:
    """Waits for a process to exit, waking the moment it does: a pidfd on Linux (Popen.wait
    with a timeout polls with sleeps of up to 50 ms, longer than a short job itself)."""

    def __init__(self, proc: subprocess.Popen[bytes] | ForkedProcess) -> None:
        self.proc = proc
        self.pidfd: int | None = None
        # A forked job's exit arrives from its server, which wait() listens to directly.
        if isinstance(proc, subprocess.Popen) and hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
            except OSError:  # kernels before 5.3; or the process is gone already
                self.pidfd = None

    def wait(self, timeout: float, also: tuple[int, ...] = ()) -> bool:
        """True once the process has exited (and is reaped); returns early, False, when
        one of the `also` descriptors has data."""
        if self.pidfd is not None:
            watched = [self.pidfd, *also]
        elif isinstance(self.proc, ForkedProcess):  # its exit is a reply from its server
            watched = [self.proc.server.replies.fileno(), *also]
        else:
            watched = list(also)
        select.select(watched, [], [], timeout)
        return self.proc.poll() is not None

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def terminate(proc: subprocess.Popen[bytes] | ForkedProcess) -> None:
    """Ends a job: SIGTERM to every process of its session (the job leads one) and of its
    process tree, SIGKILL to what is left after a grace period (sweeper.process.reaper)."""
    family = _family(proc.pid)
    _signal_family(family, signal.SIGTERM)
    reaper.stop(proc.pid, TERM_GRACE_S, exited=lambda: proc.poll() is not None)
    _signal_family(family, signal.SIGKILL)
    proc.wait()


def _merge(into: ParsedLog, other: ParsedLog) -> None:
    for mine, theirs in ((into.throughput, other.throughput), (into.latency_ms, other.latency_ms)):
        for rank, values in theirs.items():
            mine.setdefault(rank, []).extend(values)
    into.format = into.format or other.format
    into.tagged = into.tagged or other.tagged
    into.unparseable_values += other.unparseable_values
