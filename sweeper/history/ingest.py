"""result.json files to history rows: one run row, and a metrics row per metric it has."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sweeper.history.settings import ENVIRONMENT_KEYS
from sweeper.history.store import Store
from sweeper.history.tables import RUN, SEARCH_CELL, SEARCH_PROBE

RESULT_FILE = "result.json"
SEARCH_FILE = "search.json"  # a batch-size search's answers (sweeper/sweep/search/report.py)
SEARCH_ANSWERS = ("peak", "knee", "max_fit", "latency")
METRICS = ("throughput", "latency_ms")
_FLAG_PREFIX = "flag."


def result_files(directories: Iterable[Path]) -> Iterator[Path]:
    """Every job's result.json under the directories (earlier attempts, kept under a job's
    attempts/, are not runs of their own)."""
    for directory in directories:
        for path in sorted(directory.rglob(RESULT_FILE)):
            if "attempts" not in path.relative_to(directory).parts[:-1]:
                yield path


def load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


def rows(
    result: dict[str, Any], path: Path, split: list[str], now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run row and its metrics rows."""
    job_dir = Path(str(result.get("job_dir") or path.parent))
    environment = dict(result.get("environment") or {})
    environment.setdefault("host", result.get("host"))
    environment["versions"] = result.get("versions") or {}
    split_part = {k: environment.get(k) for k in split}
    annotations = {k: environment.get(k) for k in ENVIRONMENT_KEYS if k not in split}
    started = _time(result.get("started_at")) or now
    flags = _flags(result)
    identity = [
        result.get("host"),
        str(job_dir),
        result.get("started_at"),
        result.get("attempt"),
        result.get("repeat"),
        result.get("fingerprint"),
    ]
    key = hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:32]
    in_sweep = _is_sweep(job_dir.parent)
    run = {
        "key": key,
        "started_at": started,
        "ingested_at": now,
        "sweep": str(job_dir.parent if in_sweep else job_dir),
        "role": SEARCH_PROBE if in_sweep and _is_search(job_dir.parent) else RUN,
        "job_dir": str(job_dir),
        "workload": str(result.get("workload") or "builtin"),
        "model": str(result.get("model") or ""),
        "system": str(result.get("system") or ""),
        "mode": str(result.get("mode") or ""),
        "data": str(result.get("data") or ""),
        "precision": str(result.get("precision") or ""),
        "batch_size": int(result.get("batch_size") or 0),
        "instances": int(result.get("instances") or 1),
        "flags": canonical(flags),
        "environment": canonical(split_part),
        "annotations": canonical(annotations),
        "host": environment.get("host"),
        "cpu_model": environment.get("cpu_model"),
        "cpu_count": environment.get("cpu_count"),
        "accelerator": environment.get("accelerator"),
        "accelerator_driver": environment.get("accelerator_driver"),
        "git_commit": environment.get("git_commit"),
        "status": str(result.get("status")),
        "reason": result.get("reason"),
        "unstable": bool(result.get("unstable")),
    }
    metrics = []
    if run["status"] == "ok":
        for name in METRICS:
            stats = result.get(name)
            if isinstance(stats, dict) and _number(stats.get("mean")) is not None:
                metrics.append(
                    {
                        "run_key": key,
                        "metric": name,
                        "mean": _number(stats.get("mean")),
                        "ci95_low": _number(stats.get("ci95_low")),
                        "ci95_high": _number(stats.get("ci95_high")),
                        "std": _number(stats.get("std")),
                        "n": stats.get("n"),
                        "unit": result.get("unit") if name == "throughput" else "ms",
                    }
                )
    return run, metrics


def ingest(store: Store, paths: Iterable[Path], split: list[str]) -> tuple[int, int]:
    """Stores the results; (results read, runs that were new)."""
    now = datetime.now(timezone.utc)
    runs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    for path in paths:
        result = load(path)
        if result is None:
            continue
        run, measured = rows(result, path, split, now)
        runs.append(run)
        metrics += measured
    if not runs:
        return 0, 0
    added = store.add_runs(runs, metrics)
    answers = search_answer_rows(runs, now)
    if answers:
        store.add_search_answers(answers)
    return len(runs), added


def search_answer_rows(runs: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The answers of the batch-size searches these runs were probes of: one row per
    search, cell and answer, with the cell's flags and environment from its probes."""
    found: list[dict[str, Any]] = []
    by_sweep: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["role"] == SEARCH_PROBE:
            by_sweep.setdefault(run["sweep"], []).append(run)
    for sweep, probes in sorted(by_sweep.items()):
        try:
            entries = json.loads((Path(sweep) / SEARCH_FILE).read_text())
        except (OSError, ValueError):
            continue
        for entry in entries if isinstance(entries, list) else []:
            flags = canonical(_flags(entry))
            cell = [
                r
                for r in probes
                if all(str(r[c]) == str(entry.get(c, "")) for c in SEARCH_CELL)
                and r["flags"] == flags
            ]
            if not cell:
                continue
            first = min(cell, key=lambda r: r["started_at"])
            for answer in SEARCH_ANSWERS:
                value = entry.get(answer)
                if not isinstance(value, dict):
                    continue
                identity = [sweep, [first[c] for c in SEARCH_CELL], first["flags"], answer]
                blob = json.dumps([*identity, first["environment"]], default=str)
                found.append(
                    {
                        "key": hashlib.sha256(blob.encode()).hexdigest()[:32],
                        "started_at": first["started_at"],
                        "ingested_at": now,
                        "sweep": sweep,
                        **{c: first[c] for c in SEARCH_CELL},
                        "flags": first["flags"],
                        "environment": first["environment"],
                        "answer": answer,
                        "batch_size": value.get("batch_size"),
                        "throughput": _number(value.get("throughput")),
                        "unit": entry.get("unit"),
                        "status": str(entry.get("status")),
                        "detail": canonical(value),
                    }
                )
    return found


def _flags(data: dict[str, Any]) -> dict[str, Any]:
    """The flag.<name> entries of a result (or a search cell), by name."""
    return {k[len(_FLAG_PREFIX) :]: v for k, v in data.items() if k.startswith(_FLAG_PREFIX)}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@functools.lru_cache(maxsize=1024)
def _is_sweep(directory: Path) -> bool:
    return (directory / "multirun.yaml").exists()


def _is_search(directory: Path) -> bool:
    return (directory / SEARCH_FILE).exists()


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None
