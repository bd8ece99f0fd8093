"""Keys against the schema: a key the schema (sweeper/config/schema.py) does not know is refused,
with a did-you-mean, whether it came from the command line with Hydra's `+` (which lets a
new key into any config) or from a file. New keys are taken only where the schema has an
open mapping: `flags.*`, `workload.params.*`, a launcher's options, a recipe's or a
command's arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Any

from omegaconf import DictConfig

from sweeper.config.schema import BenchmarkConfig

# Keys Hydra itself adds to a composed config; not ours to judge.
_HYDRA_KEYS = ("hydra",)


def _dataclass_of(annotation: Any) -> type | None:
    """The dataclass a field holds (unwrapping `X | None`), or None for an open value."""
    if dataclasses.is_dataclass(annotation):
        return annotation if isinstance(annotation, type) else type(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [_dataclass_of(arg) for arg in typing.get_args(annotation)]
        return next((f for f in found if f is not None), None)
    return None


@functools.cache
def _fields(schema: type) -> dict[str, Any]:
    """A schema dataclass's fields and their types (evaluated once: every job is checked)."""
    return typing.get_type_hints(schema)


def unknown_key(path: str, schema: type = BenchmarkConfig) -> str | None:
    """Why the dotted key path is not a setting (None when it is one, or lies under an open
    mapping)."""
    parts = path.split(".")
    node: type | None = schema
    for depth, part in enumerate(parts):
        if node is None:
            return None  # under an open mapping: any key
        fields = _fields(node)
        if part not in fields:
            where = ".".join(parts[:depth])
            return _message(".".join(parts[: depth + 1]), part, list(fields), where)
        node = _dataclass_of(fields[part])
    return None


def unknown_keys(cfg: DictConfig, schema: type = BenchmarkConfig, prefix: str = "") -> list[str]:
    """Every key of a composed config that its schema does not know."""
    fields = _fields(schema)
    problems = []
    for key in cfg:
        name = str(key)
        if not prefix and name in _HYDRA_KEYS:
            continue
        path = f"{prefix}{name}"
        if name not in fields:
            problems.append(_message(path, name, list(fields), prefix.rstrip(".")))
            continue
        inner = _dataclass_of(fields[name])
        value = cfg._get_node(name)  # no interpolation is resolved to walk the keys
        if inner is not None and isinstance(value, DictConfig) and not value._is_none():
            problems += unknown_keys(value, inner, f"{path}.")
    return problems


def _message(path: str, name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    parent = f"{where}." if where else ""
    hint = f": did you mean {parent}{close[0]}?" if close else ""
    return (
        f"{path}: no such setting{hint} (new keys are taken only under flags.* and "
        "workload.params.*; `python -m sweeper --cfg job` shows every setting)"
    )


def check_overrides(args: list[str], groups: set[str]) -> list[str]:
    """Command-line overrides naming a key the schema does not know, before Hydra composes
    anything (Hydra's own answer to a typo is to suggest adding it with `+`). `groups`: the
    config groups (e.g. sweep), which are choices, not keys of the schema; a group's choice
    cannot be null (Hydra's answer is a traceback)."""
    fields = _fields(BenchmarkConfig)
    problems = []
    for arg in args:
        if arg.startswith(("-", "~")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        first = key.split(".", 1)[0]
        if key in groups and value.strip().lower() == "null":
            problems.append(
                f"{arg}: {key} is a config group: choose one of its options (`sweeper --help` "
                f"lists them), or leave {key}= out for the default"
            )
            continue
        if "/" in key or key in groups or first.startswith("hydra"):
            continue  # a group's choice (model=resnet50, sweep=...), or Hydra's own
        problem = unknown_key(key) if first in fields else _message(key, first, list(fields), "")
        if problem:
            problems.append(problem)
    return problems
