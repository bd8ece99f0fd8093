"""A warm start for the built-in workload: a fork server with torch already imported.

Each built-in job used to pay 3-5 s in a fresh interpreter importing torch and
torchvision, often more than its measurement. A sweep now starts one server process
(`python -m sweeper.process.forkserver <modules>`) that imports those libraries once, and each job
runs in a child forked from it: `python -m sweeper.workload ...` without the imports.

Why every measured run still starts from a clean process state:
- each job is a new process, forked from a server that has only imported modules: it never
  runs a job, a model or a torch operation, so no thread pool, CUDA context, allocator cache,
  RNG draw or module global from one job can reach the next;
- the server refuses to fork once it has more than one thread (a fork copies one thread,
  and possibly a lock another one held);
- a server's environment is exactly the job's (variables such as OMP_NUM_THREADS are read
  at import): a job with another environment gets another server (but for PER_JOB_ENV,
  variables read only once the job runs, sent with each job); the working directory is
  each job's own (the child changes to it, and puts it first on sys.path as `python -m`
  does), so one server serves every job of a sweep;
- the child reseeds Python's and numpy's RNGs from the OS, as a fresh interpreter does,
  gets its own session and log files, and dies with the server, which dies with the sweep
  (sweeper/process/guard.py).
tests/test_forkserver.py compares a forked job's state with a fresh interpreter's.
"""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from sweeper.process.guard import guard
from sweeper.process.memory_cgroup import CGROUP_ENV

# What the built-in workload imports (torch, torchvision and our modules on top).
WORKLOAD_MODULE = "sweeper.workload"
PRELOAD = (
    "sweeper.workload.loop",
    "sweeper.workload.data",
    "sweeper.workload.models",
    "scipy.special",  # the measuring rule's t quantile (sweeper.result.stats)
)
READY_TIMEOUT_S = 120.0


class ForkServerError(RuntimeError):
    """The server could not start a job; the caller runs it in a fresh process instead."""


class ForkedProcess:
    """The part of subprocess.Popen's interface the runner uses, for a forked job (a child
    of the server, not of this process: its exit status arrives from the server)."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read_exit(timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._read_exit(timeout):
            raise subprocess.TimeoutExpired(["forked job", str(self.pid)], timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _read_exit(self, timeout: float | None) -> bool:
        reply = self.server.reply(timeout)
        if reply is None:
            return False
        if reply.get("pid") != self.pid or "exit" not in reply:
            raise ForkServerError(f"unexpected reply from the fork server: {reply}")
        self.returncode = int(reply["exit"])
        return True


class ForkServer:
    def __init__(self, env: dict[str, str], cwd: str, spawn_argv: list[str]) -> None:
        self.env, self.cwd = env, cwd
        self.proc = subprocess.Popen(
            spawn_argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        guard.started(self.proc.pid)  # its jobs die with it (PR_SET_PDEATHSIG), it with us
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.requests: IO[bytes] = self.proc.stdin
        self.replies: IO[bytes] = self.proc.stdout
        ready = self.reply(READY_TIMEOUT_S)
        if not ready or not ready.get("ready"):
            self.close()
            raise ForkServerError(f"the fork server did not start: {ready}")

    @staticmethod
    def command(preload: tuple[str, ...] = PRELOAD) -> list[str]:
        return [sys.executable, "-m", "sweeper.process.forkserver", *preload]

    def reply(self, timeout: float | None) -> dict[str, Any] | None:
        """The server's next reply; None if none came within timeout."""
        fd = self.replies.fileno()
        if timeout is not None and not select.select([fd], [], [], timeout)[0]:
            return None
        line = self.replies.readline()
        if not line:
            raise ForkServerError(f"the fork server exited ({self.proc.poll()})")
        return dict(json.loads(line))

    def spawn(
        self,
        module: str,
        args: list[str],
        stdout: Path,
        stderr: Path,
        cwd: str | None,
        env: dict[str, str] | None = None,
    ) -> ForkedProcess:
        """env: the job's own environment, the server's plus variables of this job only."""
        request = {
            "module": module,
            "args": args,
            "cwd": cwd or self.cwd,
            "env": env or self.env,
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        try:
            self.requests.write(json.dumps(request).encode() + b"\n")
            self.requests.flush()
        except OSError as exc:
            raise ForkServerError(f"the fork server is gone: {exc}") from exc
        reply = self.reply(READY_TIMEOUT_S)
        if reply is None or "pid" not in reply:
            raise ForkServerError(f"the fork server did not start the job: {reply}")
        return ForkedProcess(self, int(reply["pid"]))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.requests.close()  # the server ends at end of input
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        guard.ended(self.proc.pid)
        self.replies.close()


_servers: dict[str, ForkServer] = {}
# Variables that differ from job to job and are read only once the job runs (not at
# import): they go with each job's request, and do not make another server.
PER_JOB_ENV = frozenset({CGROUP_ENV})


def warm_server(env: dict[str, str], cwd: str, spawn_argv: list[str]) -> ForkServer:
    """The server for this environment, started on first use (in cwd: its jobs run in
    their own); one at a time (a job with another environment replaces it)."""
    env = {k: v for k, v in env.items() if k not in PER_JOB_ENV}
    key = json.dumps(env, sort_keys=True)
    server = _servers.get(key)
    if server is not None and server.alive():
        return server
    shutdown()
    server = _servers[key] = ForkServer(env, cwd, spawn_argv)
    return server


def is_workload_command(argv: list[str]) -> bool:
    """`<this python> -m sweeper.workload ...`: what the fork server can start."""
    return argv[:3] == [sys.executable, "-m", WORKLOAD_MODULE]


def shutdown() -> None:
    while _servers:
        _, server = _servers.popitem()
        server.close()


atexit.register(shutdown)
__all__ = ["ForkServer", "ForkServerError", "ForkedProcess", "is_workload_command", "warm_server"]
