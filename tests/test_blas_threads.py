"""The sweep's own processes load NumPy (and SciPy's OpenBLAS) without OpenBLAS's worker
threads, and no job inherits the setting that does it (sweeper.process.blas_threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
    reason="OpenBLAS starts worker threads only where there is more than one core",
)

# Run in a fresh interpreter: the threads of the process, the variable after, and what a
# process started after sees of it.
_REPORT = """
import json, os, subprocess, sys
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.environ.get('OPENBLAS_NUM_THREADS'))"],
    capture_output=True, text=True, check=True,
).stdout.strip()
print(json.dumps({
    "threads": len(os.listdir("/proc/self/task")),
    "variable": os.environ.get("OPENBLAS_NUM_THREADS"),
    "child": child,
}))
"""


def _probe(load: str, variable: str | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if variable is not None:
        env["OPENBLAS_NUM_THREADS"] = variable
    out = subprocess.run(
        [sys.executable, "-c", load + _REPORT],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    ).stdout  # fmt: skip
    found: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return found


def test_numpy_as_it_loads_by_itself_starts_blas_threads() -> None:
    """What the others are measured against: a plain import starts OpenBLAS's threads."""
    assert _probe("import numpy\n")["threads"] > 1


def test_numpy_loaded_without_blas_threads_leaves_the_environment_as_it_was() -> None:
    load = (
        "from sweeper.process.blas_threads import numpy_without_blas_threads\n"
        "with numpy_without_blas_threads():\n"
        "    import numpy\n"
    )
    assert _probe(load) == {"threads": 1, "variable": None, "child": "None"}
    # A value the user set is theirs again after the import (and their jobs').
    assert _probe(load, variable="2") == {"threads": 1, "variable": "2", "child": "2"}


def test_numpy_loaded_already_keeps_its_threads() -> None:
    load = (
        "import numpy\n"
        "from sweeper.process.blas_threads import numpy_without_blas_threads\n"
        "with numpy_without_blas_threads():\n"
        "    import os; assert 'OPENBLAS_NUM_THREADS' not in os.environ\n"
    )
    assert _probe(load)["threads"] > 1


def test_the_sweeps_scipy_and_the_report_workers_libraries_load_without_blas_threads() -> None:
    """The sweep's process imports SciPy while its jobs are checked; the report worker imports
    pandas and matplotlib (NumPy with them): neither starts OpenBLAS's threads, neither
    leaves the variable for a job."""
    sweep = "from sweeper.sweep import finish\nfinish.import_scipy()\n"
    assert _probe(sweep) == {"threads": 1, "variable": None, "child": "None"}
    worker = (
        "from sweeper.sweep import report_worker\n"
        "report_worker.import_report_libraries(own_process=True)\n"
    )
    assert _probe(worker) == {"threads": 1, "variable": None, "child": "None"}
