"""Checks of single values, shared by the sweeper's checks and a workload's own."""

from __future__ import annotations

from omegaconf import DictConfig


def positive_int(cfg: DictConfig, key: str, example: str) -> list[str]:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return [f"{key}={value}: must be a positive integer (e.g. {example})"]
    return []


def choice(key: str, value: object, allowed: tuple[str, ...]) -> list[str]:
    if value not in allowed:
        return [f"{key}={value}: must be one of {', '.join(allowed)}"]
    return []
