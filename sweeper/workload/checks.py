"""Checks of the built-in workload's settings (conf/workload/builtin.yaml `checks`), run by
the sweeper before any job starts. Imports no torch: the sweeper may run without it."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys

from omegaconf import DictConfig

from sweeper.checks.values import choice, positive_int
from sweeper.workload.settings import DATA_FORMATS, OPTIMIZATIONS


def problems(cfg: DictConfig, preflight: bool) -> list[str]:
    return _environment(cfg) if preflight else _settings(cfg)


def _settings(cfg: DictConfig) -> list[str]:
    workload = cfg.workload
    found: list[str] = []
    for key in ("intervals", "steps_per_interval", "gradient_accumulation"):
        found += positive_int(cfg, f"workload.{key}", f"workload.{key}=4")
    drop = int(workload.metrics.drop_first)
    found += _measuring(workload, drop)
    if workload.target_rel_ci is None and 0 < workload.intervals <= drop:
        found.append(
            f"workload.intervals={workload.intervals}: must be more than "
            f"workload.metrics.drop_first ({drop}), the values the seed's rule drops "
            f"(e.g. workload.intervals={drop + 2})"
        )
    if workload.threads is not None:
        found += positive_int(cfg, "workload.threads", "workload.threads=2")
    if workload.memory_limit_gb is not None and not workload.memory_limit_gb > 0:
        found.append(
            f"workload.memory_limit_gb={workload.memory_limit_gb}: must be a positive number "
            "of GiB (null: no limit)"
        )
    found += choice("workload.optimize", workload.optimize, OPTIMIZATIONS)
    found += choice("data.format", cfg.data.format, DATA_FORMATS)
    if workload.optimize == "torchscript" and cfg.mode.name == "train":
        found.append(
            "workload.optimize=torchscript freezes the model for inference: use it with "
            "mode=infer, or workload.optimize=compile for training"
        )
    return found


def _measuring(workload: DictConfig, drop: int) -> list[str]:
    found = []
    for key in ("interval_s", "max_seconds"):
        value = workload[key]
        if value is not None and not value > 0:
            found.append(f"workload.{key}={value}: must be a positive number of seconds")
    if workload.warmup_max_s < 0:
        found.append(f"workload.warmup_max_s={workload.warmup_max_s}: must be 0 or more")
    target = workload.target_rel_ci
    if target is not None:
        if not 0 < target < 1:
            found.append(
                f"workload.target_rel_ci={target}: must be a fraction of the mean (e.g. 0.02), "
                "or null for a fixed count of intervals (workload.intervals)"
            )
        if workload.min_intervals < drop + 2:
            found.append(
                f"workload.min_intervals={workload.min_intervals}: must be at least "
                f"{drop + 2} (an interval needs two values after the {drop} dropped)"
            )
    return found


def _environment(cfg: DictConfig) -> list[str]:
    if importlib.util.find_spec("torch") is None:
        return [
            "torch is not installed: the built-in workload needs it (pip install -e '.[torch]')"
        ]
    if cfg.system.device == "cuda" and not _cuda_available(sys.executable):
        return [
            "system=gpu but CUDA is not available here (no NVIDIA driver or a CPU-only "
            "torch): use system=cpu, or run on a machine with a GPU"
        ]
    return []


@functools.cache
def _cuda_available(python: str) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
