"""A sweep's directory is its own: a new name claimed atomically, and a lock while it runs.

Two sweeps started in the same second used to share `outputs/sweeps/<date>_<time>` and
overwrite each other's jobs. A default directory is now claimed with mkdir (which fails if
the name exists, so two processes cannot both win) and gets a suffix when the name is taken.

A running sweep holds an advisory lock (flock) on `<sweep>/.sweep.lock`, which names its
owner (pid, host, start time). The kernel drops the lock however the owner ends, SIGKILL
included, so a lock file whose lock can be taken again was left by a sweep that died: it is
taken over, with a note. A second sweep pointed at a directory in use is refused.

A detached sweep on SLURM runs as a chain of driver steps (sweeper/sweep/slurm_chain.py):
between two steps no process holds the lock, so the lock file names the chain, and the
directory stays in use while the chain's next step waits in SLURM's queue.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = ".sweep.lock"
HAND_OVER_WAIT_S = 120.0


class SweepDirInUse(RuntimeError):
    """Another live sweep holds the directory."""


def claim_new_dir(path: Path) -> Path:
    """Creates `path`, or `path-2`, `path-3`, ... if taken, and returns the one created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


@dataclass
class LockOwner:
    pid: int
    host: str
    started: str
    chain: str | None = None  # a detached sweep's chain of SLURM driver steps

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


def _read_owner(fd: int) -> LockOwner | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        data: Any = json.loads(raw)
        return LockOwner(
            int(data["pid"]), str(data["host"]), str(data["started"]), data.get("chain")
        )
    except (ValueError, KeyError, TypeError):
        return None


def _owner_record(chain: str | None = None) -> bytes:
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"chain": chain} if chain else {}),
    }
    return (json.dumps(me) + "\n").encode()


def _chain_holds(sweep_dir: Path, owner: LockOwner | None) -> str | None:
    """Why a chain of driver steps other than this process's own still holds the directory:
    its next step waits or runs, or its driver ended but left jobs in SLURM's queue."""
    if owner is None or owner.chain is None:
        return None
    from sweeper.sweep import detach, slurm_chain

    if _own_chain(owner):
        return None
    if detach.chain_alive(sweep_dir, owner.chain):
        return (
            f"{sweep_dir} is in use by a detached sweep (its driver runs as SLURM jobs: "
            f"`sweeper status {sweep_dir}`); wait for it to end, or give this sweep another "
            "hydra.sweep.dir="
        )
    record = slurm_chain.Chain.load(sweep_dir)
    if record is None or record.chain_id != owner.chain:
        return None
    queued = slurm_chain.queued_jobs(record)
    if queued:
        ids = " ".join(sorted({record.slurm_id(number) for number in queued}))
        return (
            f"{sweep_dir}: the detached sweep's driver ended, but {len(queued)} of its SLURM "
            f"jobs are still queued or running ({ids}): wait for them to end, or scancel "
            "them, before this sweep uses the directory"
        )
    return None


class SweepLock:
    """Held from acquire() to release() (or the process's end)."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = sweep_dir / LOCK_FILE
        self.fd: int | None = None
        self.took_over: LockOwner | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises SweepDirInUse naming the live owner."""
        handing_over_until = time.monotonic() + HAND_OVER_WAIT_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if _own_chain(owner) and time.monotonic() < handing_over_until:
                    time.sleep(0.5)  # this chain's previous step, handing the lock over
                    continue
                who = owner.describe() if owner else "another process"
                raise SweepDirInUse(
                    f"{self.path.parent} is in use by a running sweep ({who}); wait for it "
                    "to end, or give this sweep another hydra.sweep.dir="
                ) from None
            # A releasing owner may have removed the file meanwhile: lock the one that is
            # there now, or two sweeps would each hold a lock on a different file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                previous = _read_owner(fd)
                held = _chain_holds(self.path.parent, previous)
                if held is None:
                    break
                os.close(fd)
                raise SweepDirInUse(held)
            os.close(fd)
        self.took_over = None if _own_chain(previous) else previous
        os.ftruncate(fd, 0)
        # A driver step names its chain too: should it die, the directory is still known
        # to be the chain's while its jobs are queued.
        os.pwrite(fd, _owner_record(_current_chain()), 0)
        self.fd = fd

    def hand_over(self, chain: str) -> None:
        """Leaves the directory to the chain's next driver step: the lock file names the
        chain (the directory stays in use while that step waits), and the lock is let go."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, _owner_record(chain), 0)
        os.close(self.fd)
        self.fd = None

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)  # drops the flock
        self.fd = None


def _current_chain() -> str | None:
    from sweeper.sweep import slurm_chain

    return slurm_chain.current_chain_id()


def _own_chain(owner: LockOwner | None) -> bool:
    return owner is not None and owner.chain is not None and owner.chain == _current_chain()


def in_use(sweep_dir: Path) -> bool:
    """Whether a live sweep holds this directory's lock (without taking it)."""
    try:
        fd = os.open(sweep_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        return _chain_holds(sweep_dir, _read_owner(fd)) is not None
    finally:
        os.close(fd)


def _new_dir_resolver(path: str) -> str:
    return str(claim_new_dir(Path(path)))


def register_resolver() -> None:
    """`${unique_dir:PATH}`: PATH created now, with a suffix if it exists (single runs'
    hydra.run.dir). Cached like ${now:}: every copy of the config sees the same directory."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", _new_dir_resolver, use_cache=True)
