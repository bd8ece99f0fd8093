"""The end of a sweep's jobs: each job's Result (a lost job's too), the verdicts that need
every job (overlaps, written into result.json), the report, the history and the summary."""

from __future__ import annotations

import importlib
import os
import shlex
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

from sweeper.history import record as history
from sweeper.process import aside, interrupt
from sweeper.result import verdict
from sweeper.result.model import JobDir, Result
from sweeper.sweep import detach
from sweeper.where import SweepJob


def job_result(ret: JobReturn, job: SweepJob, sweep_dir: Path, num: int) -> Result:
    """A launched job's Result: what its task returned, else what it left on disk, else why
    it was lost."""
    if ret.status == JobStatus.COMPLETED and isinstance(ret._return_value, Result):
        return ret._return_value
    job_dir = JobDir(sweep_dir / str(num))
    on_disk = job_dir.read_result()
    if on_disk is not None:
        return on_disk
    error = ret._return_value if ret.status == JobStatus.FAILED else "no result returned"
    lost = verdict.lost_job(error, job.spec.choices, job_dir)
    lost.details["overrides"] = job.overrides
    lost.unit, lost.latency_unit = job.spec.unit, job.spec.latency_unit
    return lost


def record_overlaps(results: list[Result]) -> None:
    """Once every job has ended: runs that measured beside another are unstable, in their
    result.json too (so every table and the history say so)."""
    for result in verdict.flag_overlaps(results):
        if result.job_dir and JobDir(Path(result.job_dir)).result.exists():
            result.save()


def write_report(results: list[Result], sweep_dir: Path, config: DictConfig) -> None:
    """The sweep's table in the terminal, its report files, and its runs in the history."""
    preloaded()
    from sweeper.collect import report

    frame = report.results_frame(results)
    # The plot (a third of a second for 200 runs) is drawn by a forked process meanwhile.
    drawing = aside.start(report.write_plot, frame, sweep_dir, name="sweeper-plot")
    report.print_table(frame)
    report_files(lambda: report.write_report(frame, sweep_dir, with_plot=drawing is None))
    if drawing is not None and not aside.succeeded(drawing):
        report_files(lambda: report.write_plot(frame, sweep_dir))  # again, here: why it fails
    history.record(config, sweep_dir)


def report_files(write: Callable[[], object]) -> None:
    """Writes report files; a failure to write them is one message (files already there
    stay whole: written by rename)."""
    try:
        write()
    except OSError as exc:
        if interrupt.out_of_space(exc):
            interrupt.stop_for_disk(exc)
        print(f"error: the report was not written: {exc.strerror}: {exc.filename}", file=sys.stderr)


def print_summary(results: list[Result], sweep_dir: Path, not_run: int = 0) -> None:
    """Where the results are, and every job that did not succeed (those the sweep did not
    start, when it was stopped, count among them)."""
    bad = [r for r in results if not r.ok]
    print(f"results: {sweep_dir / 'results.csv'}", file=sys.stderr)
    if bad or not_run:
        unstarted = f", {not_run} of them not run" if not_run else ""
        print(
            f"{len(bad) + not_run} of {len(results) + not_run} job(s) did not succeed{unstarted}:",
            file=sys.stderr,
        )
        for r in bad:
            print(f"  job {r.job_name}: {r.status}: {r.first_reason_line()}", file=sys.stderr)
        if not interrupt.stop_requested():  # else the command to continue follows
            print("rerun with resume=true to run only these again", file=sys.stderr)


def print_interrupted(not_run: Sequence[tuple[int, list[str]]], sweep_dir: Path) -> None:
    print(f"sweep stopped: {interrupt.reason()}", file=sys.stderr)
    if not_run:
        print(f"{len(not_run)} job(s) not run:", file=sys.stderr)
        for num, overrides in not_run:
            print(f"  job {num}: {' '.join(overrides)}", file=sys.stderr)
    again = [
        a
        for a in sys.argv[1:]
        if not a.startswith(("resume=", "hydra.sweep.dir=", "detach=")) and a != "-m"
    ]
    # A detached sweep's driver: continued detached as well.
    detached = ["detach=true"] if os.environ.get(detach.DRIVER_ENV) else []
    command = ["python", "-m", "sweeper", "-m", *again, "resume=true", *detached]
    print(
        f"to continue: {shlex.join([*command, f'hydra.sweep.dir={sweep_dir}'])}",
        file=sys.stderr,
    )


_preloading: threading.Thread | None = None


def preloaded() -> None:
    """Waits for the preloading thread (preload_report_libraries) to end: a package imported
    by two threads at once may be found half-initialized (SQLAlchemy was, by a short sweep's
    history: "partially initialized module", AttributeError)."""
    if _preloading is not None:
        _preloading.join()


def preload_report_libraries() -> None:
    """The report's and the history's libraries (pandas, matplotlib, SQLAlchemy, Alembic)
    take over a second to import and are needed only after the last job: a thread imports
    them while the jobs run, at the lowest CPU priority (Linux: nice 19 for this thread
    alone) so it does not compete with them. Whatever imports them meanwhile waits for it
    first (preloaded())."""

    def preload() -> None:
        try:
            if sys.platform.startswith("linux"):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            import matplotlib

            matplotlib.use("Agg")
            for module in ("sweeper.collect.report", "matplotlib.pyplot", "sweeper.history.store"):
                importlib.import_module(module)
        except Exception:  # the report imports them itself, and reports what fails
            pass

    # The t quantile's library is needed as soon as the first job is evaluated: imported
    # now, at the sweep's own priority (the thread at nice 19 holding its import would
    # hold up that evaluation).
    importlib.import_module("scipy.special")
    global _preloading
    _preloading = threading.Thread(target=preload, name="preload-report", daemon=True)
    _preloading.start()
