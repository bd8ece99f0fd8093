"""Work done in a forked process (sweeper.process.aside): done there when it can be, else
left to the caller, which does it itself and reports its error."""

from __future__ import annotations

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
