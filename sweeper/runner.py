"""Runs one job's command: logs to files, a time limit that kills every instance, live
metric extraction while it runs."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil

from sweeper.collect.logparse import (
    UNTAGGED,
    MetricExtractor,
    MetricPatterns,
    ParsedLog,
    parse_stream,
)

POLL_S = 0.25
_PR_SET_PDEATHSIG = 1
TERM_GRACE_S = 5.0


@dataclass
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool
    started_at: float
    ended_at: float
    parsed: ParsedLog


class _InstanceLogs:
    """Writes each instance's reassembled lines to instance-<rank>.log in the job directory."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.files: dict[int, BinaryIO] = {}

    def __call__(self, rank: int, block: bytes) -> None:
        if rank == UNTAGGED:
            return
        if rank not in self.files:
            self.files[rank] = open(self.job_dir / f"instance-{rank}.log", "ab")  # noqa: SIM115
        self.files[rank].write(block)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _die_with_parent() -> None:
    """In the child before exec: on Linux, be killed if the sweep process dies (SIGKILL
    included), so no benchmark is left running unwatched."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signals a process and all its descendants, found before any of them dies (a killed
    parent's children would be re-parented and lost)."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


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
) -> ProcessOutcome:
    """Runs argv (never through a shell) with stdout/stderr in job_dir, parsing as it goes."""
    job_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = job_dir / "stdout.log", job_dir / "stderr.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    sink = _InstanceLogs(job_dir) if split_instances else None
    extractor = MetricExtractor(patterns, line_sink=sink)
    started = time.time()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=full_env,
            start_new_session=True,  # its own process group: signals stay inside the job
            preexec_fn=_die_with_parent,
        )
    timed_out = False
    with open(stdout_path, "rb") as reader:
        last_count = 0
        while True:
            try:
                proc.wait(timeout=POLL_S)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            extractor.feed(reader.read())
            if on_value is not None:
                values = [v for series in extractor.result.throughput.values() for v in series]
                if len(values) != last_count:
                    last_count = len(values)
                    on_value(values[-1])
            if finished:
                break
            if timeout_s is not None and time.time() - started > timeout_s:
                timed_out = True
                _terminate(proc)
        extractor.feed(reader.read())
    parsed = extractor.finish()
    # Metrics printed on stderr (e.g. through a logging module) count too.
    with open(stderr_path, "rb") as reader:
        _merge(parsed, parse_stream(reader, patterns, line_sink=sink))
    if sink is not None:
        sink.close()
    return ProcessOutcome(
        exit_code=proc.returncode,
        timed_out=timed_out,
        started_at=started,
        ended_at=time.time(),
        parsed=parsed,
    )


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    kill_tree(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    kill_tree(proc.pid, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _merge(into: ParsedLog, other: ParsedLog) -> None:
    for mine, theirs in ((into.throughput, other.throughput), (into.latency_ms, other.latency_ms)):
        for rank, values in theirs.items():
            mine.setdefault(rank, []).extend(values)
    into.format = into.format or other.format
    into.tagged = into.tagged or other.tagged
    into.unparseable_values += other.unparseable_values


def tail(path: Path, lines: int = 20, max_bytes: int = 8192) -> str:
    """The last lines of a log, for a failure's reason."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
