"""A config node as plain Python values. Apart from the schema (which imports Hydra to
register itself): the collector reads the workloads' declarations without Hydra."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def to_dict(node: Any) -> dict[str, Any]:
    """A config node as a plain dict with interpolations resolved."""
    data = OmegaConf.to_container(node, resolve=True)
    if not isinstance(data, dict):
        raise TypeError(f"expected a mapping, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


ABSENT = object()  # at_path: no value there


def at_path(tree: Any, path: str) -> Any:
    """The value at a dotted key path of plain dicts and lists (a list's item by its
    index, e.g. files.0); ABSENT where there is none."""
    node = tree
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return ABSENT
    return node
