"""Instance launchers: how one benchmark job's processes are laid out.

This is one axis of a job; *where* the job runs (locally, on SLURM) is Hydra's
`hydra/launcher`, and the two never know about each other, so a SLURM job can run poprun
or torchrun inside its allocation.

A launcher is a module in this package holding one `InstanceLauncher` subclass registered
with `@register`, plus a `conf/launcher/<name>.yaml` holding its options. Given the
workload's argv it returns the command to run; its output is split per instance by the
collector (OpenMPI's `[1,<rank>]<stdout>:` tags, torchrun's `[default<rank>]:` tags).
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import re
import shutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

_REGISTRY: dict[str, type[InstanceLauncher]] = {}

# A file path, new for each run of a job, where instances that no launcher introduces to
# each other (mpirun's) meet: torch.distributed's FileStore. It needs no port, so sweeps
# on one host never collide, and it works across a SLURM allocation's nodes on the shared
# filesystem the job directory is on.
RENDEZVOUS_ENV = "SWEEPER_RENDEZVOUS_FILE"


class LauncherError(ValueError):
    """A launcher's options or layout are wrong; the message says how to fix it."""


@dataclass
class LauncherOptions:
    name: str = "single"


class InstanceLauncher(ABC):
    """Wraps a workload's argv into the command that starts `instances` processes."""

    name: ClassVar[str]
    options_type: ClassVar[type[LauncherOptions]] = LauncherOptions
    max_instances: ClassVar[int | None] = None
    # Finds the rank of a failed instance in the launcher's own error report.
    failure_pattern: ClassVar[re.Pattern[str] | None] = None
    # The runner gives each run a rendezvous file (RENDEZVOUS_ENV) for its instances.
    needs_rendezvous: ClassVar[bool] = False

    def __init__(self, options: LauncherOptions, instances: int) -> None:
        if instances < 1:
            raise LauncherError(
                f"system.instances={instances}: must be at least 1 (e.g. system.instances=2)"
            )
        if self.max_instances is not None and instances > self.max_instances:
            raise LauncherError(
                f"launcher={self.name} runs at most {self.max_instances} instance(s), "
                f"system.instances={instances}: choose launcher=torchrun or launcher=mpirun"
            )
        self.options = options
        self.instances = instances

    @abstractmethod
    def command(self, workload_argv: list[str]) -> list[str]:
        """The full argv: this launcher's own tokens followed by the workload's."""

    def environment(self) -> dict[str, str]:
        """Variables added to the job's environment."""
        return {}

    def executable(self) -> str | None:
        """The program this launcher needs on PATH (checked before any job starts)."""
        return None

    def failed_instances(self, output: str) -> list[int]:
        """Ranks of the instances that failed, read from the launcher's error report."""
        if self.failure_pattern is None:
            return []
        return sorted({int(rank) for rank in self.failure_pattern.findall(output)})

    def resolve_executable(self) -> str | None:
        """Absolute path of `executable()`, also looking beside this interpreter (a venv
        that is not activated still has its own torchrun)."""
        program = self.executable()
        if program is None:
            return None
        found = shutil.which(program)
        if found is None:
            candidate = Path(sys.executable).parent / program
            if candidate.exists():
                found = str(candidate)
        return found


def register(cls: type[InstanceLauncher]) -> type[InstanceLauncher]:
    _REGISTRY[cls.name] = cls
    return cls


def launcher_class(name: str) -> type[InstanceLauncher]:
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            pass
    if name not in _REGISTRY:
        known = ", ".join(sorted(available()))
        raise LauncherError(f"unknown launcher '{name}': choose one of {known} (launcher=NAME)")
    return _REGISTRY[name]


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def create(options: Any, instances: int) -> InstanceLauncher:
    """Build the launcher named by `options["name"]`, checking its options' names and types."""
    raw = OmegaConf.to_container(options, resolve=True) if OmegaConf.is_config(options) else options
    if not isinstance(raw, dict) or "name" not in raw:
        raise LauncherError("launcher options need a name (launcher=single|torchrun|mpirun|poprun)")
    cls = launcher_class(str(raw["name"]))
    # Typed once per distinct set of options (a sweep repeats the same few); each
    # launcher gets its own copy.
    opts = copy.deepcopy(_typed_options(cls, json.dumps(raw, sort_keys=True)))
    return cls(opts, instances)


@functools.lru_cache(maxsize=256)
def _typed_options(cls: type[InstanceLauncher], raw_json: str) -> LauncherOptions:
    try:
        typed = OmegaConf.merge(OmegaConf.structured(cls.options_type), json.loads(raw_json))
    except OmegaConfBaseException as exc:
        allowed = ", ".join(f.name for f in fields(cls.options_type))
        raise LauncherError(
            f"launcher={cls.name}: {exc.msg if hasattr(exc, 'msg') else exc} "
            f"(its options are: {allowed})"
        ) from None
    opts = OmegaConf.to_object(typed)
    assert isinstance(opts, cls.options_type)
    return opts


# OpenMPI's report of the first failed rank (mpirun, and poprun on top of it):
#   Process name: [[54321,1],2]
MPI_FAILURE = re.compile(r"Process name: \[\[\d+,\d+\],(\d+)\]")
