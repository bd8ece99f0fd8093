"""Figures from a file the benchmark program writes (a workload's `metrics.file`).

Many benchmark programs print little and write their results to a file. Once the job has
ended the file is read either as JSON, with a dotted key path per figure (a number, or a
list of per-interval numbers), or as lines matched by the workload's metric regexes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.parse.logparse import MetricPatterns, ParsedLog, parse_file

FORMATS = ("json", "lines")


class MetricsFileError(Exception):
    """The file is missing, unreadable, or lacks a figure: the job has no metrics."""


@dataclass(frozen=True)
class MetricsFile:
    path: str  # relative to the job directory, or absolute
    format: str = "json"
    throughput: str | None = None  # json: key paths
    latency_ms: str | None = None

    def location(self, job_dir: Path) -> Path:
        return job_dir / self.path  # an absolute path stays itself

    def read(self, job_dir: Path, patterns: list[MetricPatterns]) -> ParsedLog:
        """The figures, as instance 0's values. Raises MetricsFileError."""
        path = self.location(job_dir)
        if not path.is_file():
            raise MetricsFileError(f"metrics.file {path} was not written by the program")
        if self.format == "lines":
            parsed = parse_file(path, patterns)
            if not parsed.throughput:
                raise MetricsFileError(f"no throughput line in metrics.file {path}")
            return parsed
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetricsFileError(f"metrics.file {path} is not JSON: {exc}") from None
        parsed = ParsedLog(format=f"file:{path.name}")
        assert self.throughput is not None  # checked with the declaration
        parsed.throughput[0] = _numbers(data, self.throughput, path)
        if self.latency_ms:
            parsed.latency_ms[0] = _numbers(data, self.latency_ms, path)
        return parsed


def _numbers(data: Any, key_path: str, path: Path) -> list[float]:
    """The number(s) at a dotted key path; a part that is an integer indexes a list."""
    node = data
    walked: list[str] = []
    for part in key_path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and _index(part, len(node)) is not None:
            node = node[int(part)]
        else:
            where = ".".join(walked) or "the top level"
            has = ", ".join(map(str, node)) if isinstance(node, dict) else type(node).__name__
            raise MetricsFileError(
                f"metrics.file key path '{key_path}' is not in {path}: no '{part}' at "
                f"{where} (it has: {has})"
            )
        walked.append(part)
    values = node if isinstance(node, list) else [node]
    if not values or not all(_is_number(v) for v in values):
        raise MetricsFileError(
            f"metrics.file key path '{key_path}' in {path} holds {json.dumps(node)[:80]}, "
            "not a number or a list of numbers"
        )
    return [float(v) for v in values]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _index(part: str, length: int) -> int | None:
    """`part` as an index into a list of `length` items (negative counts from the end)."""
    try:
        index = int(part)
    except ValueError:
        return None
    return index if -length <= index < length else None
