"""From a composed config to the job to run, built once (`build_job`): argv, environment,
launcher, metric rules, run options and identity. Every later stage reads this, not the
composed config."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sweeper import launchers
from sweeper.config.recipes import render_flags
from sweeper.job import identity
from sweeper.job.requirements import Requirements, requirements
from sweeper.parse.logparse import MetricPatterns, compile_formats
from sweeper.parse.metrics_file import MetricsFile
from sweeper.parse.oom import compile_oom_patterns
from sweeper.result.efficiency import Figure
from sweeper.result.evaluate import MetricRules
from sweeper.result.model import DEFAULT_UNIT


@dataclass(frozen=True)
class RunOptions:
    """How a job is run and reported (not what it measures: RUN_OPTIONS)."""

    dry_run: bool = False
    resume: bool = False
    rerun_unstable: bool = False
    retries: int = 0
    timeout_s: float | None = None
    log_limit_mb: float | None = None
    repeat: int = 0

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunOptions:
        return cls(
            dry_run=bool(cfg.dry_run),
            resume=bool(cfg.resume),
            rerun_unstable=bool(cfg.rerun_unstable),
            retries=int(cfg.retries),
            timeout_s=None if cfg.timeout_s is None else float(cfg.timeout_s),
            log_limit_mb=None if cfg.log_limit_mb is None else float(cfg.log_limit_mb),
            repeat=int(cfg.repeat),
        )

    @property
    def log_limit_bytes(self) -> int | None:
        return None if self.log_limit_mb is None else int(self.log_limit_mb * 1e6)


@dataclass
class JobSpec:
    argv: list[str]
    workload_argv: list[str]
    launcher: launchers.InstanceLauncher
    instances: int
    requirements: Requirements  # what it needs from this machine (the preflight's)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: MetricRules = field(default_factory=MetricRules)
    metrics_file: MetricsFile | None = None  # figures from a file instead of the logs
    oom: list[re.Pattern[bytes]] = field(default_factory=list)
    # Start from the built-in workload's fork server (sweeper/process/forkserver) where the runner
    # can: a single `python -m sweeper.workload` process.
    warm_start: bool = False
    # GiB the job may take beyond its start-up on the CPU, in a memory cgroup of its own
    # (sweeper/process/memory_cgroup.py): the built-in workload joins it; None: no limit there.
    memory_limit_gb: float | None = None
    options: RunOptions = field(default_factory=RunOptions)
    # The columns that name its configuration (identity.choices) and the fingerprint of
    # what it measures (identity.fingerprint).
    choices: dict[str, Any] = field(default_factory=dict)
    identity: str = ""
    unit: str = DEFAULT_UNIT  # the throughput's (workload.metrics.unit)
    latency_unit: str = "ms"
    # Declared work per sample and limit (sweeper/result/efficiency.py); None: the log's.
    work: Figure | None = None
    limit: Figure | None = None

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.choices.items() if v is not None)

    def patterns(self) -> list[MetricPatterns]:
        return compile_formats(self.formats)


def metrics_file_spec(node: dict[str, Any] | None) -> MetricsFile | None:
    if node is None:
        return None
    return MetricsFile(
        path=str(node["path"]),
        format=str(node["format"]),
        throughput=node["throughput"],
        latency_ms=node["latency_ms"],
    )


PATH_KEYS = ("app_dir", "datasets_dir", "workload.command.cwd")


def resolve_paths(cfg: DictConfig, launch_dir: str) -> None:
    """Relative directories taken from where the command was started, once: for the checks
    and for the job alike (which may run inside its own directory, hydra.job.chdir=true)."""
    for key in PATH_KEYS:
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if parent is None or OmegaConf.is_interpolation(parent, name):
            continue  # e.g. ${oc.env:DATASETS_DIR}: a value from outside, used as given
        value = parent.get(name)
        if value and not str(value).startswith("$") and not os.path.isabs(str(value)):
            with read_write(parent), open_dict(parent):
                parent[name] = os.path.normpath(os.path.join(launch_dir, str(value)))


def command_flags(values: dict[str, Any]) -> dict[str, Any]:
    """`flags.<name>=<value>` as the command's `--<name>` (a name may give its own dashes)."""
    given = values.get("flags") or {}
    return {(name if name.startswith("-") else f"--{name}"): v for name, v in given.items()}


def workload_args(values: dict[str, Any]) -> dict[str, Any]:
    """The command's flags, in order: the config's recipe, if any; the workload's args laid
    over it (null there keeps the recipe's); then `flags.*` (null removes a flag). A flag
    given again keeps its first place."""
    recipe = values.get("recipe")
    args = dict(recipe["args"]) if recipe is not None else {}
    for flag, value in values["workload"]["command"]["args"].items():
        if value is not None or flag not in args:
            args[flag] = value
    args.update(command_flags(values))
    return args


def workload_argv(values: dict[str, Any]) -> list[str]:
    """The benchmark program's command line, from its declaration (conf/workload/*.yaml)."""
    command = values["workload"]["command"]
    return [
        str(command["program"]),
        *(str(item) for item in command["positional"]),
        *render_flags(workload_args(values), str(command["flag_style"])),
        *(str(item) for item in values["extra_args"]),
    ]


def build_job(
    cfg: DictConfig,
    usage: identity.Usage,
    resolve: Callable[[str, DictConfig], Any] | None = None,
) -> JobSpec:
    """Everything needed to start this config's job. Raises launchers.LauncherError, and
    ValueError for a declaration whose metric or out-of-memory regexes do not compile.
    usage: identity.usage(cfg), which the checks read as well; resolve: how its parts are
    resolved (identity.benchmark_config)."""
    # Read from the config resolved once (identity.benchmark_config): each read through
    # OmegaConf resolves again, and a job's reads here were a third of its checks' time.
    values = identity.benchmark_config(cfg, resolve)
    system, workload = values["system"], values["workload"]
    metrics, command = workload["metrics"], workload["command"]
    instances = int(system["instances"])
    launcher = launchers.create(values["launcher"], instances)
    argv = workload_argv(values)
    formats = {str(name): patterns for name, patterns in metrics["formats"].items()}
    compile_formats(formats)  # a bad regex is refused here, before any job starts
    env = {str(k): str(v) for k, v in command["env"].items()}
    choices, fingerprint = identity.identify(cfg, usage, values)
    return JobSpec(
        argv=launcher.command(argv),
        workload_argv=argv,
        launcher=launcher,
        instances=instances,
        requirements=requirements(cfg, values),
        env={**env, **launcher.environment()},
        cwd=str(command["cwd"]) if command["cwd"] else None,
        formats=formats,
        metrics_file=metrics_file_spec(metrics["file"]),
        oom=compile_oom_patterns(list(workload["oom_patterns"])),
        rules=MetricRules(
            drop_first=int(metrics["drop_first"]),
            combine=str(metrics["combine"]),
            unstable_cv=float(metrics["unstable_cv"]),
            target_rel_ci=metrics["target_rel_ci"],
        ),
        warm_start=bool(workload["fork_server"]),
        memory_limit_gb=_cpu_memory_limit(values, argv),
        options=RunOptions.from_config(cfg),
        choices=choices,
        identity=fingerprint,
        unit=str(metrics["unit"]),
        latency_unit=str(metrics["latency_unit"]),
        work=_declared_work(metrics),
        limit=_declared_limit(values),
    )


def _declared_work(metrics: dict[str, Any]) -> Figure | None:
    if metrics["flops_per_sample"] is None:
        return None
    source = metrics["flops_source"] or "declared: workload.metrics.flops_per_sample"
    return Figure(float(metrics["flops_per_sample"]), str(source))


def _declared_limit(values: dict[str, Any]) -> Figure | None:
    """system.peak_tflops at the precision the job computes in."""
    computed = identity.computed_precision(values)
    system = values["system"]
    peak = system["peak_tflops"].get(computed)
    if peak is None:
        return None
    source = f"declared: system.peak_tflops[{computed}]"
    if system["peak_source"]:
        source += f" ({system['peak_source']})"
    return Figure(float(peak) * 1e12, source)


def _cpu_memory_limit(values: dict[str, Any], argv: list[str]) -> float | None:
    """workload.memory_limit_gb where a cgroup applies: the built-in workload on the CPU (on
    CUDA it limits its own share of the device; other programs do not read the setting)."""
    limit = values["workload"].get("memory_limit_gb")
    if limit is None or values["system"].get("device") == "cuda":
        return None
    from sweeper.process.forkserver import is_workload_command

    return float(limit) if is_workload_command(argv) else None
