"""Checks of a composed config, before any job starts.

`check_values` covers what types cannot: ranges, choices, combinations. It needs nothing
outside the config, so a dry run runs it too. `check_environment` (preflight) looks at the
external parts a real run needs: tools on PATH, Graphcore's app, the dataset, CUDA. Each
problem is one line naming the key and the fix.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

import launchers
from sweeper import reaper
from sweeper.collect.stats import COMBINE_RULES
from sweeper.job import JobSpec, build_job, uses_graphcore_app
from sweeper.recipes import describe_defined_recipes

PRECISIONS = ("fp32", "16.32", "16.16")
IPU_PRECISIONS = ("16.32", "16.16")
OPTIMIZATIONS = ("auto", "none", "torchscript", "compile")
MODES = ("train", "infer")
DATA = ("synthetic", "generated", "real")
DATA_FORMATS = ("auto", "tfrecord", "folder")


def _positive_int(cfg: DictConfig, key: str, example: str) -> list[str]:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return [f"{key}={value}: must be a positive integer (e.g. {example})"]
    return []


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> list[str]:
    if value not in allowed:
        return [f"{key}={value}: must be one of {', '.join(allowed)}"]
    return []


def check_values(cfg: DictConfig) -> list[str]:
    problems: list[str] = []
    problems += _positive_int(cfg, "batch_size", "batch_size=4, or batch_size=1,2,4 -m")
    problems += _positive_int(cfg, "system.instances", "system.instances=2")
    if cfg.precision is not None:
        problems += _choice("precision", cfg.precision, PRECISIONS)
        if cfg.precision not in IPU_PRECISIONS and str(cfg.workload.name) == "graphcore":
            problems.append(
                f"precision={cfg.precision} on system={cfg.system.name}: Graphcore's app "
                f"computes in {' or '.join(IPU_PRECISIONS)} (its --precision); leave "
                "precision unset for the seed recipe's"
            )
    problems += _choice("mode", cfg.mode.name, MODES)
    problems += _choice("data", cfg.data.name, DATA)
    if cfg.timeout_s is not None and not cfg.timeout_s > 0:
        problems.append(f"timeout_s={cfg.timeout_s}: must be a positive number of seconds")
    if cfg.log_limit_mb is not None and not cfg.log_limit_mb > 0:
        problems.append(f"log_limit_mb={cfg.log_limit_mb}: must be positive (null: no limit)")
    if cfg.retries < 0:
        problems.append(f"retries={cfg.retries}: must be 0 or more")
    metrics = cfg.workload.metrics
    problems += _choice("workload.metrics.combine", metrics.combine, COMBINE_RULES)
    if metrics.drop_first < 0:
        problems.append(f"workload.metrics.drop_first={metrics.drop_first}: must be 0 or more")

    if uses_graphcore_app(cfg):
        if cfg.recipe is None:
            problems.append(
                f"the seed defines no benchmark for model={cfg.model.name} "
                f"system={cfg.system.name} mode={cfg.mode.name} data={cfg.data.name}. "
                f"It defines:\n{describe_defined_recipes()}"
            )
            return problems
    else:
        workload = cfg.workload
        for key in ("intervals", "steps_per_interval", "gradient_accumulation"):
            problems += _positive_int(cfg, f"workload.{key}", f"workload.{key}=4")
        drop = int(metrics.drop_first)
        if 0 < workload.intervals <= drop:
            problems.append(
                f"workload.intervals={workload.intervals}: must be more than "
                f"workload.metrics.drop_first ({drop}), the values the seed's rule drops "
                f"(e.g. workload.intervals={drop + 2})"
            )
        if workload.threads is not None:
            problems += _positive_int(cfg, "workload.threads", "workload.threads=2")
        problems += _choice("workload.optimize", workload.optimize, OPTIMIZATIONS)
        problems += _choice("data.format", cfg.data.format, DATA_FORMATS)
        if workload.optimize == "torchscript" and cfg.mode.name == "train":
            problems.append(
                "workload.optimize=torchscript freezes the model for inference: use it with "
                "mode=infer, or workload.optimize=compile for training"
            )
    return problems


def check_job(cfg: DictConfig) -> tuple[JobSpec | None, list[str]]:
    """The job for this config and the problems with it (the job is None when there are
    problems): values first, then the launcher's own checks of its layout and options."""
    problems = check_values(cfg)
    if problems:
        return None, problems
    try:
        return build_job(cfg), []
    except launchers.LauncherError as exc:
        return None, [str(exc)]


def _datasets_problem(cfg: DictConfig, why: str) -> list[str]:
    """The dataset directory the job will read: `datasets_dir` (by default $DATASETS_DIR)."""
    path = str(cfg.datasets_dir or "")
    if not path or path.startswith("$"):
        return [
            f"DATASETS_DIR is not set: {why} needs it (export DATASETS_DIR=/path/to/data, "
            "or datasets_dir=/path/to/data)"
        ]
    if not Path(path).is_dir():
        return [f"datasets_dir={path} does not exist: {why} reads ImageNet there"]
    return []


@functools.cache
def _cuda_available(python: str) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def check_environment(cfg: DictConfig, job: JobSpec) -> list[str]:
    """Preflight of the external parts a real (not dry) run needs."""
    problems: list[str] = []
    program = job.launcher.executable()
    if program is not None and job.launcher.resolve_executable() is None:
        problems.append(
            f"'{program}' not found on PATH: launcher={job.launcher.name} needs it "
            f"(install it, or set launcher.executable=/path/to/{program})"
        )
    if uses_graphcore_app(cfg):
        recipe = cfg.recipe
        python = str(cfg.app_python or recipe.program)
        if shutil.which(python) is None:
            problems.append(
                f"app_python={python}: not found on PATH (give app_python= the interpreter of "
                "Graphcore's environment, e.g. app_python=python3 or a full path)"
                if cfg.app_python
                else f"'{python}', the seed's interpreter for {recipe.script}, is not on PATH: "
                "give app_python= the interpreter of Graphcore's environment"
            )
        if not cfg.app_dir:
            problems.append(
                "app_dir is not set: point it at Graphcore's TensorFlow CNN app "
                "(app_dir=/path/to/cnns/training, or export GRAPHCORE_CNN_APP_DIR)"
            )
        elif not (Path(cfg.app_dir) / recipe.script).is_file():
            problems.append(
                f"app_dir={cfg.app_dir} has no {recipe.script}: point app_dir at the directory "
                "holding Graphcore's train.py and validation.py"
            )
        if "--data-dir" in recipe.args:
            problems += _datasets_problem(cfg, f"the seed's {cfg.model.name} training")
        return problems

    if importlib.util.find_spec("torch") is None:
        problems.append(
            "torch is not installed: the built-in workload needs it (pip install -e '.[torch]')"
        )
    elif cfg.system.device == "cuda" and not _cuda_available(sys.executable):
        problems.append(
            "system=gpu but CUDA is not available here (no NVIDIA driver or a CPU-only "
            "torch): use system=cpu, or run on a machine with a GPU"
        )
    if cfg.data.name == "real":
        problems += _datasets_problem(cfg, "data=real")
    return problems


ORPHAN_GRACE_S = 3.0


def check_no_orphans() -> list[str]:
    """A job of an earlier sweep still running on this host (one that escaped its sweep's
    end) would skew every measurement: named, with its pid, before any job starts."""
    left = reaper.orphans()
    # A sweep that has just died: its guard may still be killing its jobs.
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = reaper.orphans()
    return [
        f"process {pid} ({command[:120]}) was started by an earlier sweep that has ended, and "
        f"still runs on this host: it would skew the measurements; stop it (kill {pid})"
        for pid, command in left
    ]


def check_slurm(partition: str | None) -> list[str]:
    """Before anything is submitted: SLURM's tools are here, its controller answers, and the
    partition exists."""
    if shutil.which("sbatch") is None:
        return ["sbatch not found on PATH: hydra/launcher=slurm_* submits through SLURM's tools"]
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if ping.returncode != 0 or " is UP" not in ping.stdout:
        answer = (ping.stdout + ping.stderr).strip().splitlines()
        return [
            "the SLURM controller does not answer (scontrol ping: "
            f"{answer[-1] if answer else 'no answer'}): nothing was submitted; start it, or "
            "run locally without hydra/launcher="
        ]
    if partition:
        listed = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True)
        names = [name.rstrip("*") for name in listed.stdout.split()]
        if partition not in names:
            return [
                f"hydra.launcher.partition={partition}: no such SLURM partition (there are: "
                f"{', '.join(names) or 'none'})"
            ]
    return []
