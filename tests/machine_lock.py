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
        elif _shares_a_module_fixture(item):
            # Its module's tests on one worker: the module's fixture (a real sweep, seconds
            # to a minute) is then made once, not once per worker.
            item.add_marker(pytest.mark.xdist_group(f"module:{item.nodeid.split('::')[0]}"))
    # The longest chains first (xdist hands out work in this order): the SLURM tests, which
    # mostly wait on the cluster, then the slow ones; quick tests fill the gaps at the end.
    # (sort is stable: a module's tests keep their order within each rank)
    items.sort(key=_start_order)


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    module = item.nodeid.split("::")[0]
    for definitions in info.name2fixturedefs.values() if info else ():
        for fixture in definitions:
            if fixture.scope == "module" and fixture.baseid.split("::")[0] == module:
                return True
    return False


def _start_order(item: pytest.Item) -> int:
    """SLURM first; then `alone` tests (so that, in a module's group, an `alone` test is the
    one whose setup makes the module's fixture, with the machine to itself), slow, quick."""
    for rank, marker in enumerate(("slurm", "alone", "slow")):
        if item.get_closest_marker(marker) is not None:
            return rank
    return 3


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
