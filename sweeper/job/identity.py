"""A job's identity: the columns that name its configuration in every table, and the
fingerprint of what it measures (equal for an identical composed config)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.result.model import FLAG_PREFIX, PARAM_PREFIX

# Options that change how a job is run or reported, not what it measures.
RUN_OPTIONS = (
    "dry_run",
    "resume",
    "retries",
    "timeout_s",
    "log_limit_mb",
    "repeats",
    "repeat",
    "repeat_seed",
    "rerun_unstable",
    "detach",
    "driver",
    "history",  # where results are kept, not what is measured
)
_VERSIONED_PACKAGES = ("sweeper", "hydra-core", "omegaconf", "torch", "torchvision")


def benchmark_config(
    cfg: DictConfig, resolve: Callable[[str, DictConfig], Any] | None = None
) -> dict[str, Any]:
    """The composed config without Hydra's own node and without run options, resolved.
    resolve(key, node): how a top-level mapping or list is resolved, where not by OmegaConf
    (sweeper.config.resolved: once for a sweep's jobs that resolve it alike)."""
    # Resolving only these keys: Hydra's node alone holds most of a config's interpolations.
    data: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra" or key in RUN_OPTIONS:
            continue
        value = cfg[key]
        if not OmegaConf.is_config(value):
            data[str(key)] = value
        elif resolve is not None:
            data[str(key)] = resolve(str(key), value)
        else:
            data[str(key)] = OmegaConf.to_container(value, resolve=True)
    return data


def fingerprint(cfg: DictConfig) -> str:
    """Identity of what a job measures: equal for an identical composed config."""
    return _digest(benchmark_config(cfg))


def _digest(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


GROUPS = ("model", "system", "mode", "data", "precision")  # groups a workload may not use
_REFERENCE = re.compile(r"\$\{(?:[\w.]+:)?(model|system|mode|data|precision|recipe)\b")


@dataclass(frozen=True)
class Usage:
    """What a workload's runs are told apart by: the config groups (a group it does not use
    is not a column of its) and its parameters. From its declaration's `identity`, else from
    what its command refers to (`${model.name}`...; a recipe stands for model, system, mode
    and data). The built-in workload and Graphcore's app use every group."""

    groups: tuple[str, ...]
    params: tuple[str, ...]


def usage(cfg: DictConfig) -> Usage:
    workload = cfg.workload
    params = workload.get("params") or {}
    declared = workload.get("identity")
    if declared is not None:
        named = {str(item).removeprefix("workload.").removeprefix("params.") for item in declared}
        return Usage(
            tuple(g for g in GROUPS if g in declared), tuple(n for n in params if n in named)
        )
    text = _command_text(workload)
    found = set(_REFERENCE.findall(text))
    if "recipe" in found or workload.requires.recipe:
        found |= {"model", "system", "mode", "data"}
    return Usage(
        tuple(g for g in GROUPS if g in found),
        tuple(n for n in params if f"workload.params.{n}" in text),
    )


def choices(cfg: DictConfig) -> dict[str, Any]:
    """The columns that identify a job in tables; `flag.<name>` for each flag set. A group
    the workload does not use is None (empty in every table), not its default."""
    return _columns(cfg, benchmark_config(cfg), usage(cfg))


def identify(cfg: DictConfig, used: Usage, values: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """choices and fingerprint from one resolution of the config (values: benchmark_config(cfg);
    each resolving it again cost a job's checks about 1 ms); used: usage(cfg)."""
    return _columns(cfg, values, used), _digest(values)


def _columns(cfg: DictConfig, values: dict[str, Any], used: Usage) -> dict[str, Any]:
    """choices, read from the resolved config (values: benchmark_config(cfg))."""
    groups = used.groups
    workload, system = values["workload"], values["system"]
    columns = {
        "workload": workload["name"],
        "model": values["model"]["name"] if "model" in groups else None,
        # Shown where its command uses it, or where it runs several instances.
        "system": system["name"] if "system" in groups or system["instances"] > 1 else None,
        "mode": values["mode"]["name"] if "mode" in groups else None,
        "data": values["data"]["name"] if "data" in groups else None,
        "batch_size": values["batch_size"],
        "instances": system["instances"],
        "precision": computed_precision(values) if "precision" in groups else None,
    }
    # Flags and parameters as the config holds them (a list stays OmegaConf's, as it was).
    flags = cfg.get("flags") if values.get("flags") else None
    if flags:
        columns.update({f"{FLAG_PREFIX}{name}": value for name, value in flags.items()})
    for name in used.params:
        columns[f"{PARAM_PREFIX}{name}"] = cfg.workload.params[name]
    return columns


def _command_text(workload: DictConfig) -> str:
    """The declaration's command, requirements and default precision as written (their
    interpolations unresolved): where it refers to groups and parameters."""
    return json.dumps(
        [
            OmegaConf.to_container(workload.command, resolve=False),
            OmegaConf.to_container(workload.requires, resolve=False),
            workload.get("default_precision"),
        ]
    )


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def computed_precision(values: dict[str, Any]) -> str:
    """The precision the job's command really computes in: `precision=` when given, else the
    workload's default (which may follow its recipe: conf/workload/graphcore.yaml); values:
    benchmark_config(cfg)."""
    if values.get("precision") is not None:
        return str(values["precision"])
    return str(values["workload"]["default_precision"])
