"""What a job needs from the machine it runs on: its workload's program and `requires:`
(executables, files, environment variables), read from its config resolved once
(identity.benchmark_config) as its JobSpec is built. Reading them through OmegaConf again
for the preflight (sweeper.checks.declaration.check_requirements) resolved each anew: most
of that check's time, for every job of a sweep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.config.plain import ABSENT, at_path

# A plain reference in a requirement, e.g. ${app_dir}: named when its value is not set.
REFERENCE = re.compile(r"\$\{([\w.-]+)\}")


@dataclass(frozen=True)
class Requirement:
    value: str  # as resolved
    written: str  # as written in the declaration
    unset: str | None  # the first key it refers to (${key}) whose value is null


@dataclass(frozen=True)
class Requirements:
    workload: str  # the workload's name
    setup: str  # how to set it up (workload.setup), "" when not given
    program: str  # workload.command.program
    executables: tuple[Requirement, ...]
    files: tuple[Requirement, ...]
    env_vars: tuple[str, ...]


def requirements(cfg: DictConfig, values: dict[str, Any]) -> Requirements:
    """From the config and its resolved values (identity.benchmark_config(cfg))."""
    workload = values["workload"]
    requires = workload["requires"]
    written = OmegaConf.to_container(cfg.workload.requires, resolve=False)
    assert isinstance(written, dict)

    def each(kind: str) -> tuple[Requirement, ...]:
        return tuple(
            Requirement(str(value), str(raw), _unset_reference(cfg, values, str(raw)))
            for value, raw in zip(requires[kind], written[kind], strict=True)
        )

    return Requirements(
        workload=str(workload["name"]),
        setup=str(workload["setup"] or ""),
        program=str(workload["command"]["program"]),
        executables=each("executables"),
        files=each("files"),
        env_vars=tuple(str(name) for name in requires["env_vars"]),
    )


def _unset_reference(cfg: DictConfig, values: dict[str, Any], written: str) -> str | None:
    for key in REFERENCE.findall(written):
        value = at_path(values, key)
        if value is ABSENT:  # not among the resolved values (a run option): the config's
            value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            return key
    return None
