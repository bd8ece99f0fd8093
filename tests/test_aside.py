"""Work done in a forked process (sweeper.process.aside): done there when it can be, else
left to the caller, which does it itself and reports its error."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sweeper.process import aside


def test_work_aside_is_done_there_or_left_to_this_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    drawn = tmp_path / "drawn"
    process = aside.start(drawn.write_text, "drawn there", name="test-aside")
    assert process is not None and aside.succeeded(process)
    assert drawn.read_text() == "drawn there"
    # A failure there is its exit status alone: the caller does the work again, and
    # reports the error itself.
    failing = aside.start((tmp_path / "no" / "such" / "dir").write_text, "x", name="test-aside")
    assert failing is not None and not aside.succeeded(failing)
    assert "Traceback" not in capfd.readouterr().err
    assert not aside.succeeded(None)


def test_no_fork_while_another_thread_runs() -> None:
    """A fork copies a lock another thread may hold (an import's) and would wait on it."""
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not aside.can_fork()
        assert aside.start(print, name="test-aside") is None
    finally:
        release.set()
        other.join()
    assert aside.can_fork()


class _StopOnFork:
    """Sends SIGTERM to the forked process itself as it starts, before its own handling is
    set (multiprocessing runs after-fork hooks first): where a stop to the whole process
    group lands at the worst moment."""

    def __init__(self) -> None:
        import multiprocessing.util

        multiprocessing.util.register_after_fork(self, _StopOnFork._stop)

    def _stop(self) -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_as_the_process_forks_is_not_handled_there_as_the_sweeps(tmp_path: Path) -> None:
    """The sweep's own handler (which prints its message) never runs in a forked process: a
    SIGTERM that arrives before the process has set its own handling waits for it, then
    ends the process; this process's mask is as it was."""
    import signal

    handled = tmp_path / "handled"
    previous = signal.signal(signal.SIGTERM, lambda *_: handled.write_text(str(os.getpid())))
    hook = _StopOnFork()
    try:
        process = aside.start((tmp_path / "done").write_text, "x", name="test-aside")
        assert process is not None and not aside.succeeded(process)
        assert process.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        del hook
    assert not handled.exists() and not (tmp_path / "done").exists()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()
