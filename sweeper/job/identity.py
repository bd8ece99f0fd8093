"""A job's identity: the columns that name its configuration in every table, and the
fingerprint of what it measures (equal for an identical composed config)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
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


def benchmark_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config without Hydra's own node and without run options."""
    # Resolving only these keys: Hydra's node alone holds most of a config's interpolations.
    data: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra" or key in RUN_OPTIONS:
            continue
        value = cfg[key]
        data[str(key)] = (
            OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        )
    return data


def fingerprint(cfg: DictConfig) -> str:
    """Identity of what a job measures: equal for an identical composed config."""
    blob = json.dumps(benchmark_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


GROUPS = ("model", "system", "mode", "data", "precision")  # groups a workload may not use
_REFERENCE = re.compile(r"\$\{(?:[\w.]+:)?(model|system|mode|data|precision|recipe)\b")


def used_groups(cfg: DictConfig) -> tuple[str, ...]:
    """The config groups a workload's runs depend on: its declaration's `identity`, else
    those its command refers to (`${model.name}`...; a recipe stands for model, system,
    mode and data). The built-in workload and Graphcore's app use them all."""
    workload = cfg.workload
    declared = workload.get("identity")
    if declared is not None:
        return tuple(g for g in GROUPS if g in declared)
    found = set(_REFERENCE.findall(_command_text(workload)))
    if "recipe" in found or workload.requires.recipe:
        found |= {"model", "system", "mode", "data"}
    return tuple(g for g in GROUPS if g in found)


def choices(cfg: DictConfig) -> dict[str, Any]:
    """The columns that identify a job in tables; `flag.<name>` for each flag set. A group
    the workload does not use is None (empty in every table), not its default."""
    used = used_groups(cfg)
    columns = {
        "workload": cfg.workload.name,
        "model": cfg.model.name if "model" in used else None,
        # Shown where its command uses it, or where it runs several instances.
        "system": cfg.system.name if "system" in used or cfg.system.instances > 1 else None,
        "mode": cfg.mode.name if "mode" in used else None,
        "data": cfg.data.name if "data" in used else None,
        "batch_size": cfg.batch_size,
        "instances": cfg.system.instances,
        "precision": precision(cfg) if "precision" in used else None,
    }
    flags = cfg.get("flags")
    if flags:
        columns.update({f"{FLAG_PREFIX}{name}": value for name, value in flags.items()})
    for name in used_params(cfg):
        columns[f"{PARAM_PREFIX}{name}"] = cfg.workload.params[name]
    return columns


def used_params(cfg: DictConfig) -> list[str]:
    """The workload's parameters its runs are told apart by: those its `identity` names
    (`workload.params.NAME`), else those its command refers to."""
    params = cfg.workload.get("params") or {}
    declared = cfg.workload.get("identity")
    if declared is not None:
        named = {str(item).removeprefix("workload.").removeprefix("params.") for item in declared}
        return [name for name in params if name in named]
    text = _command_text(cfg.workload)
    return [name for name in params if f"workload.params.{name}" in text]


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


def precision(cfg: DictConfig) -> str:
    """The precision the job's command really computes in: `precision=` when given, else the
    workload's default (which may follow its recipe: conf/workload/graphcore.yaml)."""
    if cfg.precision is not None:
        return str(cfg.precision)
    return str(cfg.workload.default_precision)
