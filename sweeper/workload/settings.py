"""The built-in workload's settings, declared once. Imports no torch.

`MeasureSettings` is the `workload.*` node's built-in settings: the config schema's fields
and defaults (sweeper/config/schema.py, WorkloadConfig inherits it), what
conf/workload/builtin.yaml passes to the program, and the defaults of `Settings`, one run of
`python -m sweeper.workload`, whose command line (`argument_parser`) is made from the same
fields. README "Built-in workload" documents these defaults; tests/test_workload.py checks
that a job runs with them.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

MODES = ("train", "infer")
DATA = ("synthetic", "generated", "real")
OPTIMIZATIONS = ("auto", "none", "torchscript", "compile")
DATA_FORMATS = ("auto", "tfrecord", "folder")


def _setting(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class MeasureSettings:
    """How the built-in workload runs and how long it measures (`workload.<name>=`)."""

    intervals: int = _setting(6, "the fixed count of intervals, when target_rel_ci is null")
    steps_per_interval: int = _setting(4, "batches per interval, when interval_s is null")
    interval_s: float | None = _setting(0.5, "seconds per interval (null: steps_per_interval)")
    target_rel_ci: float | None = _setting(
        0.02, "measure until the 95%% interval of the mean is within this fraction of it"
    )
    min_intervals: int = _setting(5, "never fewer intervals than this")
    max_seconds: float = _setting(15.0, "the measuring time budget (then: wide)")
    warmup_steps: int = _setting(0, "untimed batches before the first interval")
    warmup_max_s: float = _setting(
        2.0, "then warm-up until two batches take the same time (10%%), at most this long"
    )
    threads: int | None = _setting(None, "intra-op threads (null: the cores / instances)")
    memory_limit_gb: float | None = _setting(
        None, "memory a job may take beyond its start-up (GiB); more fails (oom)"
    )
    channels_last: bool = _setting(True, "channels-last memory format")
    optimize: str = _setting(
        "auto", "auto: torchscript to infer, none to train", choices=OPTIMIZATIONS
    )
    gradient_accumulation: int = _setting(1, "batches per optimizer step (train)")


@dataclass
class Settings(MeasureSettings):
    """One run of `python -m sweeper.workload`: the job's choices, then MeasureSettings.
    The choices are keyword-only (a dataclass keeps the base's fields first)."""

    model: str = field(default="", metadata={"help": "the model", "required": True})
    mode: str = field(default="", metadata={"required": True, "choices": MODES})
    batch_size: int = field(default=0, metadata={"required": True})
    data: str = _setting("synthetic", "the input data", choices=DATA)
    device: str = _setting("cpu", "where it computes", choices=("cpu", "cuda"))
    precision: str = _setting("fp32", "fp32 | 16.32 | 16.16", choices=("fp32", "16.32", "16.16"))
    image_size: int = _setting(224, "input images' side, in pixels")
    optimizer: str = _setting("sgd", "the training optimizer", choices=("sgd", "rmsprop"))
    label_smoothing: float = _setting(0.0, "the training loss's label smoothing")
    group_dim: int = _setting(1, "ResNeXt's group width")
    expand_ratio: int = _setting(6, "EfficientNet's expansion ratio")
    drop_first: int = _setting(1, "values the collector drops at the start")
    data_dir: str | None = _setting(None, "ImageNet for data=real")
    data_format: str = _setting("auto", "data=real's layout", choices=DATA_FORMATS)
    workers: int = _setting(2, "data loader processes for data=real")

    def measure(self) -> MeasureSettings:
        return MeasureSettings(**{f.name: getattr(self, f.name) for f in fields(MeasureSettings)})


def argument_parser(
    prog: str, description: str | None, models: tuple[str, ...]
) -> argparse.ArgumentParser:
    """`--name-with-dashes` for every field of Settings, typed and defaulted by it, but for
    one rule: a flag left out is null (a bool: false), because a declaration renders null
    and false as nothing (sweeper/config/recipes.py render_flags) and true as the bare flag.
    conf/workload/builtin.yaml passes every setting, so a job runs with the config's."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(Settings)
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        kind = _scalar(hints[f.name])
        options: dict[str, Any] = {"help": meta.get("help")}
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=False, **options
            )
            continue
        choices = models if f.name == "model" else meta.get("choices")
        if meta.get("required"):
            options["required"] = True
        else:
            options["default"] = None if _optional(hints[f.name]) else _default(f)
        parser.add_argument(flag, type=kind, choices=choices, **options)
    return parser


def parse(argv: list[str] | None, parser: argparse.ArgumentParser) -> Settings:
    args = parser.parse_args(argv)
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})


def _scalar(hint: Any) -> type:
    """int for `int | None`, and so on."""
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _default(f: Field[Any]) -> Any:
    return None if f.default is MISSING else f.default
