"""Checks of a composed config, before any job starts.

`check_values` covers what types cannot: ranges, choices, combinations. It needs nothing
outside the config, so a dry run runs it too. `check_environment` (preflight) looks at the
external parts a real run needs: tools on PATH, Graphcore's app, the dataset, CUDA. Each
problem is one line naming the key and the fix.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sweeper import launchers
from sweeper.checks import declaration
from sweeper.checks.values import choice, positive_int
from sweeper.config.keys import unknown_keys
from sweeper.config.recipes import defined_recipes, describe_defined_recipes
from sweeper.config.resolved import ResolvePart
from sweeper.history import record as history
from sweeper.job import identity
from sweeper.job.spec import JobSpec, build_job
from sweeper.process import reaper

PRECISIONS = ("fp32", "16.32", "16.16")
MODES = ("train", "infer")
DATA = ("synthetic", "generated", "real")


def unused_groups_given(
    cfg: DictConfig, usage: identity.Usage, overrides: list[str] | None = None
) -> list[str]:
    """A value chosen on the command line for a group the workload does not use would only
    change the label: refused, naming the workload and the group. (`system` lays out its
    processes, which any program has: always allowed.) overrides: the job's (else its
    config's, or the running job's)."""
    used = usage.groups
    if overrides is None:
        overrides = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if overrides is None and HydraConfig.initialized():
        overrides = HydraConfig.get().overrides.task
    problems = []
    for override in overrides or []:
        key = str(override).lstrip("+~").split("=", 1)[0]
        group = key.split(".")[0]
        if group in identity.GROUPS and group != "system" and group not in used:
            problems.append(
                f"{override}: workload '{cfg.workload.name}' does not use {group} (its "
                f"command takes nothing from it); leave {group}= out, or name {group} in "
                "the declaration's `identity:` if it does"
            )
    return problems


@dataclass(frozen=True)
class Readers:
    """How a job's checks read what a sweep may read once for the jobs alike in it
    (sweeper.sweep.jobs); by default, each from the job's own config."""

    unknown_keys: Callable[[DictConfig], list[str]] = unknown_keys
    usage: Callable[[DictConfig], identity.Usage] = identity.usage
    declaration: Callable[[DictConfig], list[str]] = declaration.check_declaration
    resolve: ResolvePart | None = None  # identity.benchmark_config's


def check_values(
    cfg: DictConfig,
    usage: identity.Usage,
    overrides: list[str] | None = None,
    readers: Readers = Readers(),
) -> list[str]:
    """The config's values (its keys known: unknown_keys); usage: what the workload's runs
    are told apart by; overrides: the job's (unused_groups_given)."""
    problems = unused_groups_given(cfg, usage, overrides)
    problems += positive_int(cfg, "batch_size", "batch_size=4, or batch_size=1,2,4 -m")
    problems += positive_int(cfg, "system.instances", "system.instances=2")
    workload = cfg.workload
    if cfg.precision is not None:
        problems += choice("precision", cfg.precision, PRECISIONS)
        allowed = tuple(str(p) for p in workload.precisions)
        if allowed and cfg.precision in PRECISIONS and cfg.precision not in allowed:
            problems.append(
                f"precision={cfg.precision}: workload '{workload.name}' computes in "
                f"{' or '.join(allowed)} (workload.precisions); leave precision unset for "
                "its default"
            )
    problems += choice("mode", cfg.mode.name, MODES)
    problems += choice("data", cfg.data.name, DATA)
    if cfg.timeout_s is not None and not cfg.timeout_s > 0:
        problems.append(f"timeout_s={cfg.timeout_s}: must be a positive number of seconds")
    if cfg.log_limit_mb is not None and not cfg.log_limit_mb > 0:
        problems.append(f"log_limit_mb={cfg.log_limit_mb}: must be positive (null: no limit)")
    if cfg.retries < 0:
        problems.append(f"retries={cfg.retries}: must be 0 or more")
    if cfg.repeats < 1:
        problems.append(f"repeats={cfg.repeats}: must be 1 or more (runs of each configuration)")
    if cfg.rerun_unstable and not cfg.resume:
        problems.append(
            "rerun_unstable=true reruns the unstable results of an earlier sweep: give "
            "resume=true with it"
        )
    problems += readers.declaration(cfg)
    if problems:
        return problems
    if workload.requires.recipe and cfg.get("recipe") is None:
        same = [
            r["data"]
            for r in defined_recipes()
            if (r["model"], r["system"], r["mode"])
            == (cfg.model.name, cfg.system.name, cfg.mode.name)
        ]
        # The usual case: IPU systems default to the seed's training data (real).
        fix = f" Give {' or '.join(f'data={d}' for d in same)}." if same else ""
        return [
            f"the seed defines no benchmark for model={cfg.model.name} "
            f"system={cfg.system.name} mode={cfg.mode.name} data={cfg.data.name} (workload "
            f"'{workload.name}' runs a config by its recipe, conf/recipe/).{fix} It defines:\n"
            + describe_defined_recipes()
        ]
    return declaration.own_checks(cfg, preflight=False)


def check_job(
    cfg: DictConfig, overrides: list[str] | None = None, readers: Readers = Readers()
) -> tuple[JobSpec | None, list[str]]:
    """The job for this config and the problems with it (the job is None when there are
    problems): values first, then the launcher's own checks of its layout and options.
    overrides: the job's, where its config has no Hydra node to hold them."""
    problems = readers.unknown_keys(cfg)  # e.g. +batchsize=8: Hydra's `+` lets any key in
    if problems:
        return None, problems
    usage = readers.usage(cfg)  # read once for the checks and the job's columns
    problems = check_values(cfg, usage, overrides, readers)
    if problems:
        return None, problems
    try:
        return build_job(cfg, usage, readers.resolve), []
    except launchers.LauncherError as exc:
        return None, [str(exc)]
    except ValueError as exc:  # a regex of the declaration (checked already; kept as a net)
        return None, [f"{declaration.where(cfg)}: {exc}"]


def _datasets_problem(cfg: DictConfig) -> list[str]:
    """data=real: the dataset directory the job will read, `datasets_dir` ($DATASETS_DIR)."""
    path = str(cfg.datasets_dir or "")
    if not path or path.startswith("$"):
        return [
            "DATASETS_DIR is not set: data=real needs it (export DATASETS_DIR=/path/to/data, "
            "or datasets_dir=/path/to/data)"
        ]
    if not Path(path).is_dir():
        return [f"datasets_dir={path} does not exist: data=real reads the dataset there"]
    return []


def check_environment(cfg: DictConfig, job: JobSpec) -> list[str]:
    """Preflight of the external parts a real (not dry) run needs."""
    problems: list[str] = []
    program = job.launcher.executable()
    if program is not None and job.launcher.resolve_executable() is None:
        problems.append(
            f"'{program}' not found on PATH: launcher={job.launcher.name} needs it "
            f"(install it, or set launcher.executable=/path/to/{program})"
        )
    problems += declaration.check_requirements(job.requirements, job.cwd)
    problems += history.problems(cfg)
    if cfg.data.name == "real":
        problems += _datasets_problem(cfg)
    return problems + declaration.own_checks(cfg, preflight=True)


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
