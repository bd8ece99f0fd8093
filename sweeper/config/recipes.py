"""Graphcore app command lines from the seed's recipes (conf/recipe/*.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


FLAG_STYLES = ("separate", "equals")


def render_flags(args: Mapping[str, Any], style: str = "separate") -> list[str]:
    """`{--flag: value}` to argv tokens: true is a bare flag, false/None leaves it out, a list
    gives several values after one flag, anything else one value. style `equals` writes
    `--flag=value` (a list: `--flag=a,b`)."""
    argv: list[str] = []
    for flag, value in args.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(str(flag))
        elif style == "equals":
            joined = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            argv.append(f"{flag}={joined}")
        elif isinstance(value, list | tuple):
            argv += [str(flag), *(str(v) for v in value)]
        else:
            argv += [str(flag), str(value)]
    return argv


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def defined_recipes() -> list[dict[str, str]]:
    """Every (model, system, mode, data) the seed defines, from conf/recipe/ file names."""
    recipes = set(group_options("recipe"))
    found = []
    for model in group_options("model"):
        for system in group_options("system"):
            for mode in group_options("mode"):
                for data in group_options("data"):
                    if f"{model}_{system}_{mode}_{data}" in recipes:
                        found.append({"model": model, "system": system, "mode": mode, "data": data})
    return found


def describe_defined_recipes() -> str:
    return "\n".join(
        f"  model={r['model']} system={r['system']} mode={r['mode']} data={r['data']}"
        for r in defined_recipes()
    )
