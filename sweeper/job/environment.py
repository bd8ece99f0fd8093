"""Where a run ran, for result.json's `environment`: the CPU, the accelerator and its driver,
the Poplar SDK, the host, and the benchmarked program's git commit. Each is found cheaply
and once per process; what cannot be found is null."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

_TIMEOUT_S = 5


def environment(argv: list[str], cwd: str | None) -> dict[str, Any]:
    accelerator, driver = _accelerator()
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator,
        "accelerator_driver": driver,
        "sdk": _sdk(),
        "git_commit": git_commit(program_dir(argv, cwd)),
    }


def _sdk() -> str | None:
    """The Poplar SDK a job runs with: its directory's name, which carries the version
    (poplar_sdk-ubuntu_20_04-3.3.0+...), from what the SDK's enable script sets."""
    enabled = os.environ.get("POPLAR_SDK_ENABLED")
    return Path(enabled.rstrip("/")).name if enabled else None


@functools.cache
def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model"):
                return value.strip() or None
    except OSError:
        pass
    return None


@functools.cache
def _accelerator() -> tuple[str | None, str | None]:
    """The first NVIDIA GPU's name and driver (nvidia-smi), if any."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None, None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    first = out.strip().splitlines()[0] if out.strip() else ""
    name, _, driver = first.partition(",")
    return (name.strip() or None), (driver.strip() or None)


def program_dir(argv: list[str], cwd: str | None) -> Path | None:
    """The directory of the benchmarked program: a script among the first arguments, the
    package of `python -m package`, else the executable's own directory."""
    base = Path(cwd) if cwd else Path.cwd()
    head = argv[:4]
    for i, arg in enumerate(head):
        if arg == "-m" and i + 1 < len(head):
            try:
                spec = importlib.util.find_spec(head[i + 1].split(".")[0])
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin:
                return Path(spec.origin).resolve().parent
        if i > 0 and not arg.startswith("-"):
            path = base / arg
            if path.is_file():
                return path.resolve().parent
    found = shutil.which(argv[0]) if argv else None
    return Path(found).resolve().parent if found else None


@functools.cache
def git_commit(directory: Path | None) -> str | None:
    """HEAD of the git checkout the directory is in (with `-dirty` for uncommitted changes
    to tracked files); None outside one."""
    git = shutil.which("git")
    if directory is None or git is None:
        return None
    try:
        head = subprocess.run(
            [git, "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            [git, "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
