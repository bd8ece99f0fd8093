"""`python -m tests.state_probe [--mutate] [--sleep S]`: prints, as one JSON line, the
process state a benchmark could notice, for tests/test_forkserver.py to compare a job
forked from the fork server with one in a fresh interpreter. --mutate then changes that
state, as a careless job might; --sleep waits (to be killed)."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import signal
import sys
import time

import numpy as np
import torch


def state() -> dict[str, object]:
    return {
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "env_mark": os.environ.get("PROBE_MARK"),
        "torch_marker": getattr(torch, "_probe_marker", None),
        "torch_threads": torch.get_num_threads(),
        "grad_enabled": torch.is_grad_enabled(),
        "default_dtype": str(torch.get_default_dtype()),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cuda_initialized": torch.cuda.is_initialized(),
        "gc_enabled": gc.isenabled(),
        "sigint": str(signal.getsignal(signal.SIGINT)),
        "sigterm": str(signal.getsignal(signal.SIGTERM)),
        "own_process_group": os.getpgid(0) == os.getpid(),
        "open_fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "stdin_is_devnull": os.path.realpath("/proc/self/fd/0") == os.devnull,
        # Different in every process (reseeded from the OS), never shared by two jobs:
        "random": random.random(),
        "torch_rng": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest(),
        "torch_initial_seed": torch.initial_seed(),
        "numpy_random": float(np.random.random()),
    }


def mutate() -> None:
    torch._probe_marker = True  # type: ignore[attr-defined]
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(99)
    torch.set_grad_enabled(False)
    torch.ones(64, 64) @ torch.ones(64, 64)  # starts the intra-op thread pool
    os.environ["PROBE_MARK"] = "1"
    random.seed(1)
    gc.disable()


if __name__ == "__main__":
    print(json.dumps(state()), flush=True)
    if "--mutate" in sys.argv:
        mutate()
    if "--sleep" in sys.argv:
        time.sleep(float(sys.argv[sys.argv.index("--sleep") + 1]))
