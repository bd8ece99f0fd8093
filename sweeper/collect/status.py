"""`sweeper status [DIR]` and `sweeper cancel [DIR]`: a sweep seen from outside, detached
(sweeper/sweep/detach.py) or not; the newest sweep under outputs/sweeps by default."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sweeper.result.model import Result, result_files
from sweeper.sweep import detach, slurm_chain

STARTED = re.compile(r"^\[job (\d+) of (\d+)\] start ", re.M)
CANCEL_WAIT_S = 300.0


def add_parser(sub: Any) -> None:
    s = sub.add_parser("status", help="a sweep's progress, figures so far and outcome")
    s.add_argument("directory", nargs="?", help="the sweep (default: the newest)")
    s.add_argument("--watch", action="store_true", help="refresh until the sweep has ended")
    s.set_defaults(func=cmd_status)
    c = sub.add_parser("cancel", help="stop a detached sweep as Ctrl-C stops a blocking one")
    c.add_argument("directory", nargs="?", help="the sweep (default: the newest)")
    c.set_defaults(func=cmd_cancel)


def _sweep_dir(given: str | None) -> Path | None:
    if given:
        return Path(given)
    sweeps = [p for p in Path("outputs", "sweeps").glob("*") if p.is_dir()]
    return max(sweeps, key=lambda p: p.stat().st_mtime, default=None)


def cmd_status(args: argparse.Namespace) -> int:
    sweep = _sweep_dir(args.directory)
    if sweep is None or not sweep.is_dir():
        print(f"error: no sweep at {sweep or 'outputs/sweeps/'}", file=sys.stderr)
        return 2
    while True:
        text, ended = describe(sweep)
        if args.watch and sys.stdout.isatty():
            print("\033[H\033[J", end="")
        print(text, flush=True)
        if not args.watch or ended:
            return 0
        time.sleep(2)


def describe(sweep: Path) -> tuple[str, bool]:
    """What the sweep did and does, as text; and whether it has ended."""
    info = detach.read_driver(sweep)
    state, ended = _state(sweep, info)
    log_path = sweep / detach.DRIVER_LOG
    log = log_path.read_text(errors="replace") if info and log_path.exists() else ""
    started = {int(n): int(total) for n, total in STARTED.findall(log)}
    total = max(started.values(), default=None)
    queued: dict[int, str] = {}
    chain = slurm_chain.Chain.load(sweep) if info and info.get("kind") == "slurm" else None
    if chain is not None:  # a detached sweep on SLURM: its jobs are SLURM's
        queued = {} if ended else slurm_chain.queued_jobs(chain)
        started = {n: len(chain.data["jobs"]) for n, s in queued.items() if s != "PENDING"}
        total = len(chain.data["jobs"])
    results = {}
    for path in result_files(sweep):
        result = Result.load(path)
        if result is not None and path.parent.parent == sweep and path.parent.name.isdigit():
            results[int(path.parent.name)] = result
    lines = [f"sweep {sweep}: {state}"]
    for number in sorted(set(results) | set(started)):
        if number in results:
            lines.append(f"  job {number}: {_figure(results[number])}")
        elif not ended:
            lines.append(f"  job {number}: running")
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    done = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    running = 0 if ended else len(set(started) - set(results))
    summary = f"  {len(results)} ended ({done or 'none yet'}), {running} running"
    if total is not None:
        waiting = "waiting in SLURM's queue" if chain is not None else "waiting"
        submitted = " submitted" if chain is not None else ""
        summary += f", {max(0, total - len(results) - running)} {waiting} (of {total}{submitted})"
    lines.append(summary)
    if info:
        lines.append(f"  log: {sweep / detach.DRIVER_LOG}")
    if (sweep / "results.csv").exists():
        lines.append(f"  report: {sweep / 'results.csv'}, {sweep / 'summary.md'}")
    return "\n".join(lines), ended


def _state(sweep: Path, info: dict[str, Any] | None) -> tuple[str, bool]:
    if info is None:
        # A blocking sweep: its lock says whether it runs.
        from sweeper.sweep.directory import SweepDirInUse, SweepLock

        lock = SweepLock(sweep)
        try:
            lock.acquire()
        except SweepDirInUse:
            return "running (in a terminal: not detached)", False
        lock.release()
        return "not running", True
    status = info.get("exit_status")
    if status is not None:
        word = {0: "finished, succeeded", 1: "finished, some jobs did not succeed"}.get(
            int(status), "stopped (cancelled or interrupted)"
        )
        return f"{word} (exit status {status}, ended {info.get('ended')})", True
    if info.get("kind") == "slurm":
        step = str(info.get("step"))
        state = slurm_chain.job_state(step)  # asked once: alive is whether it has one
        alive: bool | None = state is not None
        where = f"its driver runs as SLURM jobs; the current step: {step}"
        waiting = info.get("waiting_on") or []
        if state == "PENDING" and waiting:
            where += f", waiting for array {', '.join(waiting)} to end"
        elif state:
            where += f" ({state.lower()})"
    else:
        alive = detach.driver_alive(info)
        where = f"driver pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
    if alive is False:
        return (
            f"the driver ended without an exit status ({where}); continue it with the same "
            "command and resume=true detach=true"
        ), True
    return f"running ({where})", False


def _figure(result: Result) -> str:
    if result.ok and result.mean is not None:
        half = result.rel_half_width
        precision = f" ±{half:.1%}" if half is not None else ""
        marks = f" ({result.marks})" if result.marks else ""
        return f"ok {result.mean:.2f} {result.throughput_unit}{precision}{marks}"
    reason = result.first_reason_line()
    return f"{result.status.value}" + (f": {reason}" if reason else "")


def cmd_cancel(args: argparse.Namespace) -> int:
    sweep = _sweep_dir(args.directory)
    info = detach.read_driver(sweep) if sweep is not None else None
    if sweep is None or info is None:
        print(f"error: no detached sweep at {sweep or 'outputs/sweeps/'}", file=sys.stderr)
        return 2
    alive = detach.driver_alive(info)
    if info.get("exit_status") is not None or alive is False:
        print(describe(sweep)[0])
        print("nothing to cancel: the sweep's driver has ended", file=sys.stderr)
        return 1
    if info.get("kind") == "slurm":
        detach.cancel_chain(sweep, info)
        return _wait_until_ended(sweep)
    if alive is None:
        print(f"error: the driver runs on {info.get('host')}: cancel it there", file=sys.stderr)
        return 2
    # As Ctrl-C in its terminal: the driver's session gets SIGINT; it cancels its jobs
    # (scancel on SLURM), records them cancelled and writes the report for what ran.
    os.killpg(int(info["pid"]), signal.SIGINT)
    return _wait_until_ended(sweep)


def _wait_until_ended(sweep: Path) -> int:
    """Until the driver has written the report and ended (a SLURM chain's last step may
    wait its turn in the queue first)."""
    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline:
        info = detach.read_driver(sweep) or {}
        if not detach.driver_alive(info):
            break
        time.sleep(0.5)
    print(describe(sweep)[0])
    return 0
