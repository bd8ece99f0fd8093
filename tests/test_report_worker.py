"""The report worker (sweeper.sweep.report_worker): a forked process writes the sweep's
report, in order with the sweep's own output; a worker that fails leaves it to the sweep;
a full disk it meets stops the sweep; a sweep that writes no report ends it at once."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from sweeper.process import interrupt
from sweeper.result.model import Result, Status
from sweeper.sweep.report_worker import ReportWorker

RESULTS = [Result(status=Status.OK, choices={"batch_size": b}) for b in (1, 2)]
CONFIG = OmegaConf.create({"name": "a sweep"})


def write_pid(results: list[Result], sweep_dir: Path, config: DictConfig) -> None:
    """A report: who wrote it, from what."""
    print(f"the table of {config.name}", flush=True)
    sizes = [r.choices["batch_size"] for r in results]
    (sweep_dir / "report.txt").write_text(f"{os.getpid()} {sizes}")


@pytest.fixture(autouse=True)
def no_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interrupt, "_reason", None)
    monkeypatch.setattr(interrupt, "_status", None)


def test_the_worker_writes_the_report_in_order_with_the_sweeps_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    worker = ReportWorker.start(write_pid)
    if worker is None:
        pytest.skip("no process can be forked here (one core, or another thread)")
    print("the last job's line")  # buffered: it must come out before the worker's table
    assert worker.write(RESULTS, tmp_path, CONFIG)
    print("the summary", flush=True)
    pid, sizes = (tmp_path / "report.txt").read_text().split(" ", 1)
    assert int(pid) != os.getpid() and sizes == "[1, 2]"
    assert capfd.readouterr().out.splitlines() == [
        "the last job's line",
        "the table of a sweep",
        "the summary",
    ]
    assert not interrupt.stop_requested()


def test_a_worker_that_died_leaves_the_report_to_the_sweep(tmp_path: Path) -> None:
    worker = ReportWorker.start(write_pid)
    if worker is None:
        pytest.skip("no process can be forked here")
    worker._process.kill()
    worker._process.join()
    assert worker.write(RESULTS, tmp_path, CONFIG) is False
    assert not (tmp_path / "report.txt").exists()


def fill_the_disk(results: list[Result], sweep_dir: Path, config: DictConfig) -> None:
    interrupt.stop_for_disk(OSError(errno.ENOSPC, "No space left on device", str(sweep_dir)))


def test_a_full_disk_met_by_the_worker_stops_the_sweep(tmp_path: Path) -> None:
    worker = ReportWorker.start(fill_the_disk)
    if worker is None:
        pytest.skip("no process can be forked here")
    assert worker.write(RESULTS, tmp_path, CONFIG)
    assert interrupt.stop_requested() and interrupt.exit_status() == 1
    assert interrupt.reason() == f"No space left on device: {tmp_path}"


def test_a_sweep_without_a_report_ends_its_worker(tmp_path: Path) -> None:
    worker = ReportWorker.start(write_pid)
    if worker is None:
        pytest.skip("no process can be forked here")
    worker.close()
    assert not worker._process.is_alive()
    assert not (tmp_path / "report.txt").exists()


def test_a_worker_forked_before_hydra_starts_resolves_as_the_sweep(tmp_path: Path) -> None:
    """A sweep's worker is forked as its process starts (sweeper.sweep.finish.
    fork_report_worker), before Hydra registers its resolvers: the config it is handed
    resolves there as in the sweep (${now:...} in history.url). In a process of its own,
    as a sweep's is then: this one's may have Hydra's resolvers already."""
    import subprocess
    import sys
    import time

    script = """
import sys
from pathlib import Path
from omegaconf import OmegaConf
from sweeper.sweep.report_worker import ReportWorker

def write(results, sweep_dir, config):
    resolved = OmegaConf.to_container(config, resolve=True)
    (sweep_dir / "report.txt").write_text(resolved["url"])

assert not OmegaConf.has_resolver("now")
worker = ReportWorker.start(write)
assert worker is not None
config = OmegaConf.create({"url": "history-${now:%Y}.db"})
sys.exit(0 if worker.write([], Path(sys.argv[1]), config) else 3)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    year = time.strftime("%Y")
    assert (tmp_path / "report.txt").read_text() in (
        f"history-{year}.db",
        f"history-{int(year) - 1}.db",
    )


def test_the_workers_imports_collect_no_garbage_and_leave_the_collector_as_it_was() -> None:
    """The worker's imports run with the garbage collector off (their objects live as long
    as the process) and frozen after; the collector is on again afterwards, where it was on
    (a thread of the sweep's own process imports with it left as it is)."""
    import subprocess
    import sys

    probe = (
        "import gc\n"
        "from sweeper.sweep import report_worker\n"
        "collections = []\n"
        "gc.callbacks.append(lambda phase, info: collections.append(phase))\n"
        "report_worker.import_report_libraries(own_process=True)\n"
        "own = (len(collections), gc.isenabled(), gc.get_freeze_count() > 0)\n"
        "gc.disable()\n"
        "report_worker.import_report_libraries(own_process=True)\n"
        "print(own, gc.isenabled())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "(0, True, True) False"
