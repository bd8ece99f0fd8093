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
from sweeper.result import model
from sweeper.result.files import finite_number
from sweeper.result.model import FLAG_PREFIX, PARAM_PREFIX, Result

SEARCH_FILE = "search.json"  # a batch-size search's answers (sweeper/sweep/search/report.py)
SEARCH_ANSWERS = ("peak", "knee", "max_fit", "latency")
METRICS = ("throughput", "latency_ms", "efficiency")
EFFICIENCY_UNIT = "share"  # of the device's limit: 0.62 is 62% of peak


def result_files(directories: Iterable[Path]) -> Iterator[Path]:
    """Every job's result.json under the directories."""
    for directory in directories:
        yield from model.result_files(directory)


def rows(
    result: Result, path: Path, split: list[str], now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run row and its metrics rows."""
    job_dir = Path(str(result.job_dir or path.parent))
    details = result.details
    environment = dict(details.get("environment") or {})
    environment.setdefault("host", result.host)
    environment["versions"] = details.get("versions") or {}
    split_part = {k: environment.get(k) for k in split}
    annotations = {k: environment.get(k) for k in ENVIRONMENT_KEYS if k not in split}
    started = _time(result.started_at) or now
    identity = [
        result.host,
        str(job_dir),
        result.started_at,
        result.attempt,
        result.repeat,
        result.fingerprint,
    ]
    key = hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:32]
    in_sweep = _is_sweep(job_dir.parent)
    choices = result.choices
    run = {
        "key": key,
        "started_at": started,
        "ingested_at": now,
        "sweep": str(job_dir.parent if in_sweep else job_dir),
        "role": SEARCH_PROBE if in_sweep and _is_search(job_dir.parent) else RUN,
        "job_dir": str(job_dir),
        "workload": str(choices.get("workload") or "builtin"),
        **{c: str(choices.get(c) or "") for c in ("model", "system", "mode", "data", "precision")},
        "batch_size": int(choices.get("batch_size") or 0),
        "instances": int(choices.get("instances") or 1),
        "flags": canonical(_flags(choices)),
        "environment": canonical(split_part),
        "annotations": canonical(annotations),
        **{k: environment.get(k) for k in ("host", "cpu_model", "cpu_count")},
        **{k: environment.get(k) for k in ("accelerator", "accelerator_driver", "git_commit")},
        "status": result.status.value,
        "reason": result.reason,
        "unstable": result.unstable,
    }
    return run, _metric_rows(result, key)


def _metric_rows(result: Result, key: str) -> list[dict[str, Any]]:
    """A row per figure of an ok run: its mean, 95% interval, spread, count and unit."""
    metrics = []
    used = result.details.get("efficiency") or {}
    figures = {
        "throughput": result.throughput,
        "latency_ms": result.latency_ms,
        # The share of the peak: its interval is the throughput's, scaled.
        "efficiency": {
            "mean": used.get("share"),
            "ci95_low": used.get("share_ci95_low"),
            "ci95_high": used.get("share_ci95_high"),
            "n": (result.throughput or {}).get("n"),
        },
    }
    units = {
        "throughput": result.throughput_unit,
        "latency_ms": result.latency_unit or "ms",
        "efficiency": EFFICIENCY_UNIT,
    }
    for name in METRICS if result.ok else ():
        stats = figures[name]
        if isinstance(stats, dict) and finite_number(stats.get("mean")) is not None:
            metrics.append(
                {
                    "run_key": key,
                    "metric": name,
                    **{
                        k: finite_number(stats.get(k))
                        for k in ("mean", "ci95_low", "ci95_high", "std")
                    },
                    "n": stats.get("n"),
                    "unit": units[name],
                }
            )
    return metrics


def ingest(store: Store, paths: Iterable[Path], split: list[str]) -> tuple[int, int]:
    """Stores the results; (results read, runs that were new)."""
    now = datetime.now(timezone.utc)
    runs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    for path in paths:
        result = Result.load(path)
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
                        "throughput": finite_number(value.get("throughput")),
                        "unit": entry.get("unit"),
                        "status": str(entry.get("status")),
                        "detail": canonical(value),
                    }
                )
    return found


def _flags(data: dict[str, Any]) -> dict[str, Any]:
    """The flag.<name> entries of a result (or a search cell), by name."""
    flags = {k[len(FLAG_PREFIX) :]: v for k, v in data.items() if k.startswith(FLAG_PREFIX)}
    # A declared workload's parameters tell its series apart as flags do (prefixed).
    return {**flags, **{k: v for k, v in data.items() if k.startswith(PARAM_PREFIX)}}


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
