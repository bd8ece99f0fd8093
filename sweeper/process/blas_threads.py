"""NumPy loaded without OpenBLAS's worker threads, in the sweep's own processes.

As NumPy loads, OpenBLAS starts a worker thread per core, and each spins waiting for work
for about a tenth of a second before it sleeps: importing NumPy and SciPy took 0.31 s of
CPU for 0.16 s of wall time on this 2-core VM (0.15 s with one thread), and the spinning
took the core on which a forked process was checking the sweep's jobs (a 200-job sweep's
first job started at 0.81 s, 0.72 s without them: medians of ten interleaved runs). The
sweep's processes use NumPy for element-wise arithmetic on short series, never a BLAS
routine that its threads would share.

OpenBLAS reads its thread count from the environment once, as it loads: the variable is set
for the import alone and then restored, so that no job started later inherits it (a job's
own NumPy keeps its threads). Only where no other thread of the process starts a job
meanwhile.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from hydra.core.utils import env_override

THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"


@contextlib.contextmanager
def numpy_without_blas_threads() -> Iterator[None]:
    """NumPy, where imported inside, loads OpenBLAS with one thread; a NumPy already loaded
    keeps what it has. The variable as it was afterwards (Hydra's env_override, as a job's
    hydra.job.env_set)."""
    if "numpy" in sys.modules:
        yield
        return
    with env_override({THREADS_VARIABLE: "1"}):
        yield
