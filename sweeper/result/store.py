"""result.json: one job's outcome, written atomically; and the identity of a job's config."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.job.spec import precision

RESULT_FILE = "result.json"
FLAG_PREFIX = "flag."  # the columns of flags set from the command line (flags.<name>=)
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


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one. The
    file's mode is what the user's umask gives any file they write (mkstemp's is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON that any parser reads: a figure that does not exist (NaN, an infinite interval
    of one value) is null."""
    write_atomic(path, json.dumps(finite_json(data), indent=2, allow_nan=False) + "\n")


def finite_json(data: Any) -> Any:
    """data with every NaN or infinite float replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(value) for value in data]
    return data


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_result(job_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((job_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
