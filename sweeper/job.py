"""From a composed config to the job to run: argv, environment, launcher, metric rules."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

import launchers
from sweeper.collect.evaluate import MetricRules
from sweeper.collect.logparse import MetricPatterns, compile_formats
from sweeper.recipes import render_flags
from sweeper.schema import to_dict


@dataclass
class JobSpec:
    argv: list[str]
    workload_argv: list[str]
    launcher: launchers.InstanceLauncher
    instances: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: MetricRules = field(default_factory=MetricRules)
    # Start from the built-in workload's fork server (sweeper/forkserver) where the runner
    # can: a single `python -m sweeper.workload` process.
    warm_start: bool = False

    def patterns(self) -> list[MetricPatterns]:
        return compile_formats(self.formats)


def uses_graphcore_app(cfg: DictConfig) -> bool:
    return str(cfg.workload.name) == "graphcore"


PATH_KEYS = ("app_dir", "datasets_dir")


def resolve_paths(cfg: DictConfig, launch_dir: str) -> None:
    """Relative directories taken from where the command was started, once: for the checks
    and for the job alike (which may run inside its own directory, hydra.job.chdir=true)."""
    for key in PATH_KEYS:
        if OmegaConf.is_interpolation(cfg, key):
            continue  # e.g. ${oc.env:DATASETS_DIR}: a value from outside, used as given
        value = cfg.get(key)
        if value and not str(value).startswith("$") and not os.path.isabs(str(value)):
            with read_write(cfg), open_dict(cfg):
                cfg[key] = os.path.normpath(os.path.join(launch_dir, str(value)))


def precision(cfg: DictConfig) -> str:
    """The precision the job's command really computes in: `precision=` when given (the
    IPU app's --precision then follows it), else the seed recipe's --precision, else the
    workload's default."""
    if cfg.precision is not None:
        return str(cfg.precision)
    recipe = cfg.get("recipe")
    if uses_graphcore_app(cfg) and recipe is not None and "--precision" in recipe.args:
        return str(recipe.args["--precision"])
    return str(cfg.workload.default_precision)


def graphcore_argv(cfg: DictConfig) -> list[str]:
    """The seed's command line for this config: interpreter, script, recipe flags, extras."""
    recipe = cfg.recipe
    program = cfg.app_python or recipe.program
    flags = to_dict(recipe.args)
    if cfg.precision is not None:
        flags["--precision"] = str(cfg.precision)
    flags.update(command_flags(cfg))  # a flag the recipe has keeps its place
    return [str(program), str(recipe.script), *render_flags(flags), *cfg.extra_args]


def command_flags(cfg: DictConfig) -> dict[str, Any]:
    """`flags.<name>=<value>` as the command's `--<name>` (a name may give its own dashes)."""
    given = to_dict(cfg.flags) if cfg.get("flags") else {}
    return {(name if name.startswith("-") else f"--{name}"): v for name, v in given.items()}


def builtin_argv(cfg: DictConfig) -> list[str]:
    """`python -m sweeper.workload ...` for the built-in torchvision workload."""
    model, workload = cfg.model, cfg.workload
    argv = [
        sys.executable,
        "-m",
        "sweeper.workload",
        "--model",
        model.name,
        "--mode",
        cfg.mode.name,
        "--data",
        cfg.data.name,
        "--batch-size",
        str(cfg.batch_size),
        "--device",
        cfg.system.device,
        "--precision",
        precision(cfg),
        "--image-size",
        str(model.image_size),
        "--optimizer",
        model.optimizer,
        "--label-smoothing",
        str(model.label_smoothing),
        "--group-dim",
        str(model.group_dim),
        "--expand-ratio",
        str(model.expand_ratio),
        "--intervals",
        str(workload.intervals),
        "--steps-per-interval",
        str(workload.steps_per_interval),
        "--warmup-steps",
        str(workload.warmup_steps),
        "--gradient-accumulation",
        str(workload.gradient_accumulation),
        "--optimize",
        workload.optimize,
        "--channels-last" if workload.channels_last else "--no-channels-last",
    ]
    if workload.threads is not None:
        argv += ["--threads", str(workload.threads)]
    if cfg.data.name == "real":
        argv += [
            "--data-dir",
            str(cfg.datasets_dir),
            "--data-format",
            cfg.data.format,
            "--workers",
            str(cfg.data.workers),
        ]
    # The workload's parser takes the last of a repeated option: a flag given here wins.
    return argv + render_flags(command_flags(cfg)) + list(cfg.extra_args)


def build_job(cfg: DictConfig) -> JobSpec:
    """Everything needed to start this config's job. Raises launchers.LauncherError."""
    instances = int(cfg.system.instances)
    launcher = launchers.create(cfg.launcher, instances)
    if uses_graphcore_app(cfg):
        workload_argv = graphcore_argv(cfg)
        cwd = cfg.app_dir
    else:
        workload_argv = builtin_argv(cfg)
        cwd = None
    metrics = cfg.workload.metrics
    formats = to_dict(metrics.formats)
    return JobSpec(
        argv=launcher.command(workload_argv),
        workload_argv=workload_argv,
        launcher=launcher,
        instances=instances,
        env=launcher.environment(),
        cwd=str(cwd) if cwd else None,
        formats=formats,
        rules=MetricRules(
            drop_first=int(metrics.drop_first),
            combine=str(metrics.combine),
            unstable_cv=float(metrics.unstable_cv),
        ),
        warm_start=bool(cfg.workload.get("fork_server", False)),
    )
