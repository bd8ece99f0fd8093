"""The fork server's process: imports the workload's libraries once, then forks one child
per job, each of which runs `python -m <module> <args>` as a fresh interpreter would.

Started and spoken to by sweeper.process.forkserver (see there for the design). Requests come one
JSON line at a time on stdin; replies go out as JSON lines on stdout:

    -> {"module": "sweeper.workload", "args": [...], "cwd": "...", "env": {...},
        "stdout": "<file>", "stderr": "<file>"}
    <- {"pid": 1234}                  once the child exists
    <- {"pid": 1234, "exit": 0}       when it has ended (negative: killed by that signal)

What keeps every child's state clean: this process never runs the workload or any torch
operation, so there is no thread pool, CUDA context, allocator cache or RNG draw to
inherit; it checks that it is single-threaded before each fork (a fork copies one thread
only; numpy's OpenBLAS pool, started at import, stops itself at a fork); its environment
is the job's own (the client starts another server for a different one), and the child
reseeds the RNGs that a fresh process seeds from the OS.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import json
import os
import random
import runpy
import signal
import sys
import traceback
from typing import Any

_PR_SET_PDEATHSIG = 1
_START_CWD = os.getcwd()  # the server's working directory, first on its sys.path (-m)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _settle_threads() -> None:
    """numpy's OpenBLAS starts its worker threads at import, and stops them in its fork
    handler (restarting them when next needed): one throwaway fork leaves this process
    single-threaded. A thread that survives it makes every request fall back."""
    if _threads() > 1:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)


def _run_child(request: dict[str, Any], channels: tuple[int, int], prctl: Any) -> None:
    """In the forked child: become the job, run it, exit. Never returns."""
    code = 1
    try:
        os.setsid()  # its own process group, as the runner gives every job
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the server
        for fd in channels:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for source, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(source, target)
            os.close(source)
        os.chdir(request["cwd"])
        # `python -m` puts its working directory first on sys.path: the job's, as a fresh
        # interpreter started there would have it (the server may have started elsewhere).
        if sys.path and sys.path[0] == _START_CWD:
            sys.path[0] = os.getcwd()
        os.environ.clear()
        os.environ.update(request["env"])
        # A fresh interpreter seeds these from the OS; forked children would share one.
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        if "torch" in sys.modules:
            sys.modules["torch"].seed()  # (CUDA's generators lazily: CUDA stays untouched)
        sys.argv = [request["module"], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve(preload: list[str]) -> None:
    # The protocol gets private descriptors; stray prints of any library go to stderr.
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for module in preload:
        importlib.import_module(module)
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    _settle_threads()
    threads = _threads()
    replies.write(json.dumps({"ready": True, "threads": threads}) + "\n")
    channels = (requests.fileno(), replies.fileno())
    for line in requests:
        request = json.loads(line)
        threads = _threads()
        if threads != 1:
            # Importing started a thread: forking now could copy a held lock.
            replies.write(json.dumps({"error": f"{threads} threads: cannot fork"}) + "\n")
            continue
        pid = os.fork()
        if pid == 0:
            _run_child(request, channels, prctl)
        replies.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    serve(sys.argv[1:])
