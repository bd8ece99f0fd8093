"""A memory cgroup of one job's own, for `workload.memory_limit_gb` on the CPU: a limit the
kernel enforces on what the job's processes really use, so the same batch size fits (or
does not) every time. An address-space cap (RLIMIT_AS) counts reserved mappings rather than
memory used and bites at a different size from one try to the next; it is kept only as the
fallback where no memory cgroup can be made (not root, no delegation), labelled approximate.

The sweeper makes the cgroup and removes it; the built-in workload joins it once it has
started (its interpreter, torch's libraries and thread pool stay charged where they were),
so the limit is what the job's processes may take beyond their start-up, all instances
together. A job over it is killed by the kernel's OOM killer, which raises the cgroup's own
`oom_kill` count: that is how its end is told from any other SIGKILL.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

# The built-in workload joins the cgroup named here (sweeper/workload/memory.py).
CGROUP_ENV = "SWEEPER_MEMORY_CGROUP"
CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "sweeper-job-"
_serial = itertools.count()

# What result.json's `memory_limit.mechanism` says.
CGROUP_V1 = "cgroup v1 (memory.limit_in_bytes)"
CGROUP_V2 = "cgroup v2 (memory.max)"
ADDRESS_SPACE = "address-space cap (RLIMIT_AS): approximate, counts reserved mappings"


@dataclass
class MemoryCgroup:
    path: Path
    version: int  # 1 or 2

    @property
    def mechanism(self) -> str:
        return CGROUP_V1 if self.version == 1 else CGROUP_V2

    def oom_kills(self) -> int:
        """How many of the job's processes the kernel's OOM killer ended."""
        events = self.path / ("memory.oom_control" if self.version == 1 else "memory.events")
        with contextlib.suppress(OSError, ValueError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def peak_bytes(self) -> int | None:
        """The most the job's processes used at once (beyond their start-up), where the
        kernel keeps that figure (v1 always; v2 from Linux 5.19)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        with contextlib.suppress(OSError, ValueError):
            return int((self.path / name).read_text())
        return None

    def remove(self) -> None:
        """Once the job's processes have ended (a cgroup with processes cannot be removed:
        then it is left to the next job's clean-up of its creator's leftovers)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def create(limit_gb: float) -> MemoryCgroup | None:
    """A new memory cgroup below this process's own, limited to limit_gb (swap included
    where the kernel accounts it); None where this machine does not let us make one."""
    for parent, version in _parents():
        _remove_leftovers(parent)
        path = parent / f"{_PREFIX}{os.getpid()}-{next(_serial)}"
        try:
            path.mkdir()
        except OSError:
            continue
        try:
            _set_limit(path, version, int(limit_gb * (1 << 30)))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            continue
        return MemoryCgroup(path, version)
    return None


def join(path: str) -> None:
    """Moves the calling process into the cgroup at path (its children follow it)."""
    Path(path, "cgroup.procs").write_text(f"{os.getpid()}\n")


def _set_limit(path: Path, version: int, limit: int) -> None:
    if version == 1:
        (path / "memory.limit_in_bytes").write_text(str(limit))
        swap = path / "memory.memsw.limit_in_bytes"  # memory + swap; absent without swap accounting
        if swap.exists():
            swap.write_text(str(limit))
    else:
        (path / "memory.max").write_text(str(limit))
        swap = path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")


def _parents() -> list[tuple[Path, int]]:
    """Where a child cgroup may be made: this process's own memory cgroup (v1), or its
    unified cgroup where the memory controller is delegated to its children (v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[tuple[Path, int]] = []
    for line in lines:
        _, controllers, group = line.split(":", 2)
        group = group.lstrip("/")
        if "memory" in controllers.split(","):
            found.append((CGROUP_ROOT / "memory" / group, 1))
        elif controllers == "":
            unified = CGROUP_ROOT / group
            with contextlib.suppress(OSError):
                if "memory" in (unified / "cgroup.subtree_control").read_text().split():
                    found.append((unified, 2))
    return found


def _remove_leftovers(parent: Path) -> None:
    """Empty cgroups that a sweeper process which no longer runs left behind (killed
    before it could remove them)."""
    with contextlib.suppress(OSError):
        for child in parent.glob(f"{_PREFIX}*"):
            creator = child.name.removeprefix(_PREFIX).split("-", 1)[0]
            if creator.isdigit() and not _alive(int(creator)):
                with contextlib.suppress(OSError):
                    child.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
