"""Rows of the history's frames as plain records, and what changed between two runs'
environments."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def annotation_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """What of the environment changed between two runs (versions, commit, host, ...)."""
    old, new = flatten(json.loads(before["annotations"])), flatten(json.loads(after["annotations"]))
    return {
        k: [old.get(k), new.get(k)]
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat()
