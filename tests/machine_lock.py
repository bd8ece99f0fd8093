"""Parallel tests that never make a result flaky (a pytest plugin, loaded by conftest.py).

The suite runs under pytest-xdist (`-n`), since most tests wait on subprocesses. A test
marked `alone` needs the machine to itself: the measuring rule, overlap detection, a sweep
killed on purpose (its jobs die within seconds, and another sweep started meanwhile would
see them as an earlier sweep's leftovers), a deliberate leftover process. Every test holds
a lock on one file for as long as it runs: shared for ordinary tests, exclusive for `alone`
ones. A turnstile in front of it keeps new tests from starting while an `alone` test
waits, so it is never starved; the other worker sits idle while it runs. A fixture whose
figures are judged takes the machine to itself the same way (machine_to_itself).

Work is handed out (`--dist loadgroup`) in groups:
- tests marked `slurm` share the one small local cluster: xdist_group("slurm") keeps them
  on one worker, one after another as when run serially;
- the tests of a module with a module-scoped fixture (a real sweep that several tests
  read) run on one worker, so that the fixture is made once;
- the SLURM chain first (it mostly waits on the cluster), slow tests next, quick ones
  filling the gaps, `alone` tests last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

_LOCK_DIR_ENV = "SWEEPER_TEST_LOCK_DIR"
# While tests share the cores, OpenMP's threads wait passively: torch's threads spin while
# they wait for each other, and two processes' spinning threads on shared cores stall each
# other. Measured on a 2-core VM, one EfficientNet-B0 run in two processes at once: fp32
# 21 s each (3.3 s alone), bf16 not done in 120 s (3.3 s alone); passive: 2.5 s and 5.4 s.
# A test that has the machine to itself runs with the user's setting (measurements as they
# would be made).
_SHARING_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
_USERS = "SWEEPER_TEST_USERS_"  # + name: the user's value, kept for the workers ("" unset)
# The machine lock this worker's current test holds (a worker runs one test at a time).
_held: dict[str, IO[str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "alone: needs the machine to itself (run while no other test runs)"
    )
    config.addinivalue_line(
        "markers", "late: handed out with the alone tests (a fixture takes the machine to itself)"
    )
    for name, value in _SHARING_ENV.items():  # before any test imports torch
        if _USERS + name not in os.environ:  # the controller; its workers inherit both
            os.environ[_USERS + name] = os.environ.get(name, "")
            os.environ.setdefault(name, value)
    # The controller picks the directory; workers (spawned after this) inherit it.
    if not hasattr(config, "workerinput") and _LOCK_DIR_ENV not in os.environ:
        os.environ[_LOCK_DIR_ENV] = tempfile.mkdtemp(prefix="sweeper-test-locks-")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which turns the groups into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(f"module:{item.nodeid.split('::')[0]}"))
    items.sort(key=_start_order)  # stable: a module's tests keep their order within a rank


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    module = item.nodeid.split("::")[0]
    for definitions in info.name2fixturedefs.values() if info else ():
        for fixture in definitions:
            if fixture.scope == "module" and fixture.baseid.split("::")[0] == module:
                return True
    return False


def _start_order(item: pytest.Item) -> int:
    """SLURM first, then slow, then quick tests; `alone` tests last (each holds the whole
    machine wherever it runs, and waits for the test running beside it to end: at the end
    it neither holds up the SLURM chain nor waits for one of its long tests), and with them
    `late` ones (a module whose fixture takes the machine to itself)."""
    if item.get_closest_marker("alone") is not None or item.get_closest_marker("late"):
        return 3
    for rank, marker in enumerate(("slurm", "slow")):
        if item.get_closest_marker(marker) is not None:
            return rank
    return 2


@contextlib.contextmanager
def machine_to_itself() -> Iterator[None]:
    """The machine to itself for a part of a test (a fixture's sweep whose rates are judged).
    The test's shared lock is given up first (two tests upgrading at once would otherwise
    wait for each other), then taken exclusively behind the turnstile, as an `alone` test's
    is, and shared again after."""
    lock = _held.get("machine")
    if lock is None:  # not under this plugin's protocol
        yield
        return
    directory = Path(os.environ.get(_LOCK_DIR_ENV, tempfile.gettempdir()))
    fcntl.flock(lock, fcntl.LOCK_UN)
    with open(directory / "turnstile", "a") as turnstile:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with _users_settings():
                    yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)


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
        _held["machine"] = lock
        try:
            with _users_settings() if alone else contextlib.nullcontext():
                yield
        finally:
            _held.pop("machine", None)
            fcntl.flock(lock, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


@contextlib.contextmanager
def _users_settings() -> Iterator[None]:
    """The environment as the user gave it (not _SHARING_ENV), for a test's processes while it
    has the machine to itself."""
    shared = {name: os.environ.get(name) for name in _SHARING_ENV}
    _set({name: os.environ.get(_USERS + name) or None for name in _SHARING_ENV})
    try:
        yield
    finally:
        _set(shared)


def _set(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
