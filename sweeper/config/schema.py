"""The typed schema of a composed benchmark config.

Hydra checks every value merged into these dataclasses (from conf/ files and from the
command line) against their types, so `batch_size=abc` or an unknown key fails with a
message naming the key before anything runs. Range rules that types cannot express
(batch_size > 0, ...) live in sweeper/checks/preflight.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from sweeper.config import interpolation_cache
from sweeper.history.settings import HistorySettings
from sweeper.workload.settings import MeasureSettings


@dataclass
class ModelConfig:
    name: str = MISSING
    family: str = MISSING  # resnet | resnext | efficientnet
    image_size: int = 224
    optimizer: str = "sgd"  # sgd (momentum 0.9) | rmsprop
    label_smoothing: float = 0.0
    group_dim: int = 1  # EfficientNet: channels per group in the "depthwise" convolutions
    expand_ratio: int = 6  # EfficientNet: MBConv expansion
    # FLOP per sample by mode (infer, train), for programs that do not count their own work
    # (Graphcore's app); the built-in workload counts it from the model it runs.
    flops_per_sample: dict[str, float] = field(default_factory=dict)
    flops_source: str | None = None


@dataclass
class ModeConfig:
    name: str = MISSING  # train | infer


@dataclass
class DataConfig:
    name: str = MISSING  # synthetic | generated | real
    format: str = "auto"  # real data: auto | tfrecord | folder
    dir: str | None = None  # real data: where it is (${datasets_dir})
    workers: int = 2


@dataclass
class SystemConfig:
    name: str = MISSING
    device: str = MISSING  # cpu | cuda | ipu
    instances: int = 1
    ipus: int | None = None
    # The system's peak, TFLOP/s by precision (fp32, 16.32, 16.16), from its datasheet: the
    # limit every figure is put against. Empty: the limit the workload measures, if any.
    peak_tflops: dict[str, float] = field(default_factory=dict)
    peak_source: str | None = None


@dataclass
class MetricFormat:
    throughput: str = MISSING
    latency_ms: str | None = None
    stopped: str | None = None  # a line saying why measuring stopped: target | budget | count


@dataclass
class MetricsFileConfig:
    """Figures read from a file the program writes, once it has ended."""

    path: str = MISSING  # relative to the job directory, or absolute
    format: str = "json"  # json: the key paths below | lines: metrics.formats' regexes
    throughput: str | None = None  # json: a dotted key path (e.g. results.throughput.mean)
    latency_ms: str | None = None


@dataclass
class MetricsConfig:
    formats: dict[str, MetricFormat] = field(default_factory=dict)
    file: MetricsFileConfig | None = None
    unit: str = "samples/s"  # the throughput's unit, in every table, plot and the history
    latency_unit: str = "ms"  # the latency figure's unit
    drop_first: int = 1
    combine: str = "mean"  # mean | sum, across instances
    unstable_cv: float = 0.10
    # A result whose 95% interval is wider than this fraction of its mean is marked wide.
    target_rel_ci: float | None = None
    # Work per sample (FLOP), for the efficiency: a number, an interpolation, or null (then
    # a `work: flops_per_sample=X (source)` line in the log, as the built-in workload prints).
    flops_per_sample: float | None = None
    flops_source: str | None = None


@dataclass
class CommandConfig:
    """The program's command line: program, positional, then args rendered as flags."""

    program: str = MISSING  # a name on PATH or a path
    positional: list[str] = field(default_factory=list)  # e.g. a script or a subcommand
    # Flag -> value: true is a bare flag, false/null leaves it out, a list is several values.
    # Laid over the config's recipe (conf/recipe/), if it has one: null keeps the recipe's.
    args: dict[str, Any] = field(default_factory=dict)
    # How a flag and its value are written: `separate` (--flag value) or `equals`
    # (--flag=value, for programs that accept only that form, e.g. sysbench).
    flag_style: str = "separate"
    cwd: str | None = None  # null: the job's own directory
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RequiresConfig:
    """What the preflight checks before any job starts."""

    executables: list[str] = field(default_factory=list)  # on PATH, or paths
    files: list[str] = field(default_factory=list)
    env_vars: list[str] = field(default_factory=list)
    recipe: bool = False  # every config needs its recipe (conf/recipe/<m>_<s>_<mode>_<d>)


@dataclass
class WorkloadConfig(MeasureSettings):
    """A benchmark program declared as data (conf/workload/<name>.yaml, or the user's own
    <config dir>/workload/<name>.yaml). README: "Workloads". The built-in workload's own
    settings (ignored by other programs) are MeasureSettings' (sweeper/workload/settings.py)."""

    name: str = MISSING
    command: CommandConfig = field(default_factory=CommandConfig)
    requires: RequiresConfig = field(default_factory=RequiresConfig)
    # What to do when a requirement is missing: shown with the preflight's message.
    setup: str | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Regexes over a failed job's output that mean it ran out of memory (status `oom`).
    oom_patterns: list[str] = field(default_factory=list)
    # The precision a job computes in when `precision` is null (the workload's own default),
    # and the precisions it can compute in (empty: any of fp32, 16.32, 16.16).
    default_precision: str = "fp32"
    # Data by mode when the job chooses none (sweeper/config/default_data.py).
    default_data: dict[str, str] = field(default_factory=dict)
    precisions: list[str] = field(default_factory=list)
    # Start each job from the fork server with torch imported: only `python -m
    # sweeper.workload` (the built-in workload) can. false: a fresh process per job.
    fork_server: bool = False
    # Checks of the workload's own settings, as "module:function" (cfg, preflight) -> problems.
    checks: str | None = None
    # The config groups its runs depend on (of model, system, mode, data, precision); null:
    # those its command refers to. The others are left empty in every table and refused
    # on the command line.
    identity: list[str] | None = None
    # The declaration's own variables, for its command (${workload.params.NAME}).
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeConfig:
    program: str = MISSING  # the seed's interpreter (python / python3)
    script: str = MISSING  # train.py | validation.py
    # Flag -> value: true is a bare flag, false/null leaves it out, a list is several values.
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriverConfig:
    """A detached sweep's driver steps on SLURM (sweeper/sweep/slurm_chain.py): short jobs
    of one CPU that submit the arrays, then collect them and write the report."""

    partition: str | None = None  # null: the launcher's
    timeout_min: int = 30
    mem_gb: float = 2.0
    sbatch_args: list[str] = field(default_factory=list)  # e.g. ["--account=proj"]


@dataclass
class BenchmarkConfig:
    model: ModelConfig = MISSING
    mode: ModeConfig = MISSING
    data: DataConfig = MISSING
    system: SystemConfig = MISSING
    workload: WorkloadConfig = MISSING
    # Each instance launcher plugin checks its own options (launchers/).
    launcher: dict[str, Any] = field(default_factory=lambda: {"name": "single"})
    recipe: RecipeConfig | None = None
    batch_size: int = 4
    precision: str | None = None
    dry_run: bool = False
    app_dir: str | None = None
    app_python: str | None = None
    datasets_dir: str = "$DATASETS_DIR"
    extra_args: list[str] = field(default_factory=list)
    # flags.<name>=<value>: the rendered command's --<name> set, added or (null) removed.
    flags: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    resume: bool = False
    retries: int = 0
    repeats: int = 1
    repeat: int = 0
    repeat_seed: int = 0
    rerun_unstable: bool = False
    # Check everything, then go on in the background: the command returns at once
    # (sweeper/sweep/detach.py; `sweeper status`, `sweeper cancel`).
    detach: bool = False
    driver: DriverConfig = field(default_factory=DriverConfig)
    log_limit_mb: float | None = 1024.0
    history: HistorySettings = field(default_factory=HistorySettings)


ConfigStore.instance().store(name="sweeper_schema", node=BenchmarkConfig)


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def register_resolvers() -> None:
    """Resolvers the workload declarations use: `${sweeper.first_set:a,b,...}` (the first
    value that is not null) and `${sweeper.python:}` (this interpreter, so that a job runs
    in the environment the sweeper runs in)."""
    if not OmegaConf.has_resolver("sweeper.first_set"):
        OmegaConf.register_new_resolver("sweeper.first_set", _first_set)
    if not OmegaConf.has_resolver("sweeper.python"):
        OmegaConf.register_new_resolver("sweeper.python", lambda: sys.executable)


register_resolvers()
interpolation_cache.install()
