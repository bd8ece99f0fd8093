"""A forked process that writes the sweep's report: it imports the report's and the
history's libraries while the jobs run, then writes the report once handed the results.

Those libraries (pandas, matplotlib, SQLAlchemy, Alembic) take over a second of CPU to
import and are needed only after the last job. Imported by a thread of the sweep's own
process, they held its interpreter lock for that second: each job's bookkeeping, on the
jobs' critical path, waited for it (about 2 ms a job over a 200-job sweep of short jobs).
A process of its own imports them on the core the jobs leave free, at the lowest priority,
and holds no lock of the sweep's. It starts from the sweep's state (sweeper.process.aside),
so it writes what the sweep would; if it fails in any way, the sweep writes the report
itself.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from hydra.core.utils import setup_globals
from omegaconf import DictConfig

from sweeper.process import aside, interrupt
from sweeper.process.blas_threads import numpy_without_blas_threads
from sweeper.result.model import Result

REPORT_LIBRARIES = ("sweeper.collect.report", "matplotlib.pyplot", "sweeper.history.store")

WriteReport = Callable[[list[Result], Path, DictConfig], None]


def import_report_libraries(own_process: bool = False) -> None:
    """At the lowest CPU priority (Linux: nice 19 for the calling thread alone), so that it
    does not compete with the jobs; a failure is left to the report, which imports them
    again and reports it. own_process: the calling thread is the process's only one at work
    (the report worker's), which collects no garbage meanwhile."""
    collecting = gc.isenabled()
    if own_process:
        # What imports make lives as long as the process: collections over it, pass after
        # pass as it piles up, were 0.1 s of the 0.65 s these imports take.
        gc.disable()
    try:
        if sys.platform.startswith("linux"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        # In the worker, NumPy without OpenBLAS's spinning threads (the worker starts no
        # job); in the sweep's process, a thread beside the jobs leaves its environment be.
        with numpy_without_blas_threads() if own_process else contextlib.nullcontext():
            import matplotlib

            matplotlib.use("Agg")
            for module in REPORT_LIBRARIES:
                importlib.import_module(module)
    except Exception:
        pass
    finally:
        # Out of the collector's later scans. A full collection over it, set off by
        # unpickling the sweep's results, took 60 ms of the report's time after the last job.
        gc.freeze()
        if own_process and collecting:
            gc.enable()


class ReportWorker:
    def __init__(self, connection: Connection, process: BaseProcess) -> None:
        self._connection = connection
        self._process = process

    @classmethod
    def start(cls, write: WriteReport) -> ReportWorker | None:
        """A worker that will write(results, sweep_dir, config); None where no process can
        be forked (sweeper.process.aside)."""
        ours, its = aside.FORK.Pipe()
        # Not a daemon: it forks the plot's process (close() ends it where it must).
        process = aside.start(_serve, its, ours, write, name="sweeper-report", daemon=False)
        its.close()  # a worker that dies leaves end of file here, not a wait
        if process is None:
            ours.close()
            return None
        worker = cls(ours, process)
        # However the sweep ends without its report (bad input, a stop), the worker ends
        # then, not after its imports (multiprocessing would wait for it).
        atexit.register(worker.close)
        return worker

    def write(self, results: list[Result], sweep_dir: Path, config: DictConfig) -> bool:
        """Has the worker write the report (its output follows this process's so far) and
        waits for it; False where it did not, and the caller writes it."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self._connection.send((results, sweep_dir, config))
            stop = self._connection.recv()
        except (EOFError, OSError):  # it died (the report is written here instead)
            return False
        finally:
            self._connection.close()
            aside.succeeded(self._process)
        if stop is not None:  # it stopped for a full disk: the sweep's stop (exit status 1)
            interrupt.request_stop(*stop)
        return True

    def close(self) -> None:
        """No report to write (a driver step that continues later): the worker ends now,
        whatever it is importing."""
        if not self._connection.closed:
            self._connection.close()
            self._process.terminate()
            self._process.join()


def _serve(connection: Connection, sweeps_end: Connection, write: WriteReport) -> None:
    """In the worker: imports while waiting for the results; writes their report. Its copy
    of the sweep's end is closed: the sweep's exit, however it comes, is end of file here."""
    sweeps_end.close()
    importing = threading.Thread(target=import_report_libraries, args=(True,), name="import-report")
    importing.start()
    try:
        request: Any = connection.recv()
    except EOFError:  # no report to write
        return
    importing.join()
    # Hydra registers its resolvers (${now:...}) as it starts: after a worker forked as the
    # sweep's process started (sweeper.sweep.finish.fork_report_worker).
    setup_globals()
    results, sweep_dir, config = request
    write(results, sweep_dir, config)
    sys.stdout.flush()
    sys.stderr.flush()
    stopped = interrupt.stop_requested()  # a full disk, met writing the report
    connection.send((interrupt.reason(), interrupt.exit_status() or 1) if stopped else None)
