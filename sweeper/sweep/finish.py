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
from sweeper.process.blas_threads import numpy_without_blas_threads
from sweeper.result import verdict
from sweeper.result.model import JobDir, Result
from sweeper.sweep import detach, report_worker
from sweeper.sweep.report_worker import ReportWorker
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
    """The sweep's table in the terminal, its report files, and its runs in the history:
    written by the report worker where one was started (start_report_worker), else here."""
    global _worker
    worker, _worker = _worker, None
    if worker is not None and worker.write(results, sweep_dir, config):
        return
    _write_report(results, sweep_dir, config)


def _write_report(results: list[Result], sweep_dir: Path, config: DictConfig) -> None:
    preloaded()
    from sweeper.collect import report

    frame = report.results_frame(results)
    # The plot (a third of a second for 200 runs) is drawn by a forked process meanwhile.
    drawing = aside.start(report.write_plot, frame, sweep_dir, name="sweeper-plot")
    report.print_table(frame)
    report_files(lambda: report.write_report(frame, sweep_dir, with_plot=drawing is None))
    history.record(config, sweep_dir)  # while the plot is drawn, where it still is
    if drawing is not None and not aside.succeeded(drawing):
        report_files(lambda: report.write_plot(frame, sweep_dir))  # again, here: why it fails


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
_worker: ReportWorker | None = None


def preloaded() -> None:
    """Waits for the preloading thread (preload_report_libraries) to end: a package imported
    by two threads at once may be found half-initialized (SQLAlchemy was, by a short sweep's
    history: "partially initialized module", AttributeError)."""
    if _preloading is not None:
        _preloading.join()


def import_scipy() -> None:
    """The t quantile's library is needed as soon as the first job is evaluated: imported
    now, at the sweep's own priority (an import at nice 19 holding its lock would hold up
    that evaluation). NumPy without OpenBLAS's threads (sweeper.process.blas_threads): no job
    is started meanwhile."""
    with numpy_without_blas_threads():
        importlib.import_module("scipy.special")


def preload_report_libraries() -> None:
    """The report's and the history's libraries imported by a thread while the jobs run,
    at the lowest CPU priority; whatever imports them meanwhile waits for it first
    (preloaded()). For a sweep that writes its report here (the batch-size search)."""
    import_scipy()
    global _preloading
    _preloading = threading.Thread(
        target=report_worker.import_report_libraries, name="preload-report", daemon=True
    )
    _preloading.start()


def start_report_worker() -> None:
    """A process that imports the report's libraries while the jobs run and writes the
    report at their end (sweeper.sweep.report_worker), where the sweep's process did not
    fork one as it started (fork_report_worker); where none can be forked, a thread
    preloads them (preload_report_libraries)."""
    fork_report_worker()
    if _worker is None:
        preload_report_libraries()


def fork_report_worker() -> None:
    """The report worker forked as a sweep's process starts, before Hydra composes its
    config: its imports (half a second of a core) then take the core that Hydra's start
    leaves idle, rather than one beside the first jobs, whose gaps they lengthened (0.15 s
    over a 200-job sweep of short jobs). A sweep that writes no report closes it
    (stop_report_worker); where none can be forked, the sweep starts one later."""
    global _worker
    if _worker is None:
        _worker = ReportWorker.start(_write_report)


def stop_report_worker() -> None:
    """The sweep ends without a report here (a driver step that continues later)."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None
