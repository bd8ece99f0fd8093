"""The typed schema of a composed benchmark config.

Hydra checks every value merged into these dataclasses (from conf/ files and from the
command line) against their types, so `batch_size=abc` or an unknown key fails with a
message naming the key before anything runs. Range rules that types cannot express
(batch_size > 0, ...) live in sweeper/validation.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


@dataclass
class ModelConfig:
    name: str = MISSING
    family: str = MISSING  # resnet | resnext | efficientnet
    image_size: int = 224
    optimizer: str = "sgd"  # sgd (momentum 0.9) | rmsprop
    label_smoothing: float = 0.0
    group_dim: int = 1  # EfficientNet: channels per group in the "depthwise" convolutions
    expand_ratio: int = 6  # EfficientNet: MBConv expansion


@dataclass
class ModeConfig:
    name: str = MISSING  # train | infer


@dataclass
class DataConfig:
    name: str = MISSING  # synthetic | generated | real
    format: str = "auto"  # real data: auto | tfrecord | folder
    workers: int = 2


@dataclass
class SystemConfig:
    name: str = MISSING
    device: str = MISSING  # cpu | cuda | ipu
    instances: int = 1
    ipus: int | None = None


@dataclass
class MetricFormat:
    throughput: str = MISSING
    latency_ms: str | None = None


@dataclass
class MetricsConfig:
    formats: dict[str, MetricFormat] = field(default_factory=dict)
    unit: str = "samples/s"
    drop_first: int = 1
    combine: str = "mean"  # mean | sum, across instances
    unstable_cv: float = 0.10


@dataclass
class WorkloadConfig:
    name: str = MISSING  # builtin | graphcore
    # The precision a job computes in when `precision` is null (the workload's own default).
    default_precision: str = "fp32"
    intervals: int = 6
    steps_per_interval: int = 4
    warmup_steps: int = 0
    threads: int | None = None
    channels_last: bool = True
    optimize: str = "auto"  # auto | none | torchscript | compile
    gradient_accumulation: int = 1
    # Built-in workload: start each job from a fork server with torch imported (clean state:
    # sweeper/forkserver). false: a fresh interpreter per job.
    fork_server: bool = True
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


@dataclass
class RecipeConfig:
    program: str = MISSING  # the seed's interpreter (python / python3)
    script: str = MISSING  # train.py | validation.py
    # Flag -> value: true is a bare flag, false/null leaves it out, a list is several values.
    args: dict[str, Any] = field(default_factory=dict)


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
    log_limit_mb: float | None = 1024.0


ConfigStore.instance().store(name="sweeper_schema", node=BenchmarkConfig)


def to_dict(node: Any) -> dict[str, Any]:
    """A config node as a plain dict with interpolations resolved."""
    data = OmegaConf.to_container(node, resolve=True)
    if not isinstance(data, dict):
        raise TypeError(f"expected a mapping, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}
