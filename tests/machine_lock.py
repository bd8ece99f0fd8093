"""Parallel tests that never make a result flaky (a pytest plugin, loaded by conftest.py).

The suite runs under pytest-xdist (`-n`), since most tests wait on subprocesses. A test
marked `alone` needs the machine to itself: the measuring rule, overlap detection, a sweep
killed on purpose (its jobs die within seconds, and another sweep started meanwhile would
see them as an earlier sweep's leftovers), a deliberate leftover process. Every test holds
a lock on one file for as long as it runs: shared for ordinary tests, exclusive for `alone`
ones. A turnstile in front of it keeps new tests from starting while an `alone` test
waits, so it is never starved; the other worker sits idle while it runs.

Tests marked `slurm` share the one small local cluster: xdist_group("slurm") keeps them on
one worker (with `--dist loadgroup`), one after another as when run serially.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_LOCK_DIR_ENV = "SWEEPER_TEST_LOCK_DIR"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "alone: needs the machine to itself (run while no other test runs)"
    )
    # The controller picks the directory; workers (spawned after this) inherit it.
    if not hasattr(config, "workerinput") and _LOCK_DIR_ENV not in os.environ:
        os.environ[_LOCK_DIR_ENV] = tempfile.mkdtemp(prefix="sweeper-test-locks-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """The lock covers the test's setup (module fixtures that run sweeps), call and teardown."""
    directory = Path(os.environ.get(_LOCK_DIR_ENV, tempfile.gettempdir()))
    alone = item.get_closest_marker("alone") is not None
    with open(directory / "turnstile", "a") as turnstile, open(directory / "machine", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
