"""A job's identity: the columns that name its configuration in every table, and the
fingerprint of what it measures (equal for an identical composed config)."""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.result.model import FLAG_PREFIX

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


def choices(cfg: DictConfig) -> dict[str, Any]:
    """The columns that identify a job in tables; `flag.<name>` for each flag set."""
    columns = {
        "workload": cfg.workload.name,
        "model": cfg.model.name,
        "system": cfg.system.name,
        "mode": cfg.mode.name,
        "data": cfg.data.name,
        "batch_size": cfg.batch_size,
        "instances": cfg.system.instances,
        "precision": precision(cfg),
    }
    flags = cfg.get("flags")
    if flags:
        columns.update({f"{FLAG_PREFIX}{name}": value for name, value in flags.items()})
    return columns


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
