"""A job's result as the product reads and writes it: its status (`Status`), its figures and
verdict (`Result`, one result.json), and the files of its directory (`JobDir`).

result.json is read and written only through these, and its JSON stays what earlier sweeps
wrote: every field this module does not name is kept as it was, in `details`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from sweeper.result.files import write_json_atomic

CHOICE_KEYS = (
    "workload",
    "model",
    "system",
    "mode",
    "data",
    "batch_size",
    "instances",
    "precision",
)
FLAG_PREFIX = "flag."  # the columns of flags set from the command line (flags.<name>=)
PARAM_PREFIX = "param."  # the columns of a declared workload's parameters it is told apart by
EXTRA_PREFIXES = (FLAG_PREFIX, PARAM_PREFIX)  # choice columns beyond CHOICE_KEYS
DEFAULT_UNIT = "samples/s"  # what a result.json without a unit measured (the CNN workloads)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class Status(str, Enum):
    """A job's status, as result.json, the tables and the history spell it."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"  # killed at its time limit (timeout_s, or the scheduler's)
    NO_METRICS = "no-metrics"
    INVALID = "invalid"  # a figure that is not a number
    CANCELLED = "cancelled"  # stopped (Ctrl-C, scancel) before it had a result
    OOM = "oom"  # out of memory: a result (the batch does not fit), not a crash
    DRY_RUN = "dry-run"
    NOT_RUN = "not-run"  # the sweep was stopped before this job started
    ERROR = "error"  # the command could not run at all (a problem the user can fix)

    def __str__(self) -> str:
        return self.value


def iso_time(timestamp: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(timestamp))


def epoch(iso: str | None) -> float | None:
    """The instant an iso_time string names; None for none or a malformed one."""
    try:
        return time.mktime(time.strptime(str(iso), TIME_FORMAT)) if iso else None
    except ValueError:
        return None


@dataclass
class Result:
    """One result.json. `choices` are the columns that identify the configuration
    (CHOICE_KEYS and `flag.<name>`), written at the top level as before."""

    status: Status
    choices: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    unstable: bool = False  # not to be trusted: noisy, no steady state, measured beside another
    wide: bool = False  # less precise than asked: its 95% interval is wider than the target
    throughput: dict[str, Any] | None = None  # stats.Summary.to_dict()
    latency_ms: dict[str, Any] | None = None
    job_dir: str | None = None
    host: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    fingerprint: str | None = None
    repeat: int = 0
    attempt: int | None = None
    repeats: int = 1  # how many runs this result combines (sweeper/result/repeats.py)
    unit: str | None = None  # the throughput's (workload.metrics.unit); None: samples/s
    latency_unit: str | None = None  # None: ms
    details: dict[str, Any] = field(default_factory=dict)  # every other field, as written

    # -- JSON ------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        data = dict(data)
        named = {f.name for f in fields(cls)} - {"choices", "details", "status"}
        choices = {
            key: data.pop(key)
            for key in list(data)
            if key in CHOICE_KEYS or key.startswith(EXTRA_PREFIXES)
        }
        values = {key: data.pop(key) for key in list(data) if key in named}
        status = _status(data.pop("status", None))
        values["repeat"] = int(values.get("repeat") or 0)
        values["repeats"] = int(values.get("repeats") or 1)
        values["unstable"] = bool(values.get("unstable"))
        values["wide"] = bool(values.get("wide"))
        return cls(status=status, choices=choices, details=data, **values)

    def to_json(self) -> dict[str, Any]:
        """result.json's fields: the choices first, then the verdict and the figures."""
        data: dict[str, Any] = {**self.choices, "status": self.status.value}
        for f in fields(self):
            if f.name not in ("choices", "details", "status"):
                data[f.name] = getattr(self, f.name)
        data.update(self.details)
        if self.repeats == 1 and "repeats" not in self.details:
            del data["repeats"]  # a single run's result.json never had the field
        return data

    @classmethod
    def load(cls, path: Path) -> Result | None:
        """The result in a result.json file; None when there is none or it is unreadable."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls.from_json(data) if isinstance(data, dict) and "status" in data else None

    def save(self) -> None:
        """Written atomically into its job directory (a reader sees the old or the new)."""
        assert self.job_dir is not None
        write_json_atomic(JobDir(Path(self.job_dir)).result, self.to_json())

    # -- reading -----------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def mean(self) -> float | None:
        """The throughput figure (in throughput_unit), for an ok run."""
        value = (self.throughput or {}).get("mean")
        return float(value) if isinstance(value, int | float) else None

    @property
    def rel_half_width(self) -> float | None:
        """The 95% interval's half-width relative to the mean; None without an interval."""
        stats, mean = self.throughput or {}, self.mean
        low, high = stats.get("ci95_low"), stats.get("ci95_high")
        if not mean or not isinstance(low, int | float) or not isinstance(high, int | float):
            return None
        return (float(high) - float(low)) / 2 / abs(mean)

    @property
    def throughput_unit(self) -> str:
        return self.unit or DEFAULT_UNIT

    @property
    def window(self) -> tuple[float, float] | None:
        """When it measured: (start, end), seconds since the epoch."""
        start, end = epoch(self.started_at), epoch(self.ended_at)
        return (start, end) if start is not None and end is not None else None

    @property
    def job_name(self) -> str:
        """The job's directory name (its number in the sweep)."""
        return Path(str(self.job_dir or "?")).name

    def first_reason_line(self) -> str:
        return (self.reason or "").splitlines()[0] if self.reason else ""

    # -- the verdict's changes (sweeper/result/verdict.py) --------------------------------
    def add_reason(self, note: str) -> None:
        self.reason = f"{self.reason}; {note}" if self.reason else note

    def mark_unstable(self, note: str) -> None:
        """Unstable for one more reason: named under the one "unstable:", before the
        "wide:" part of the reason if there is one."""
        self.unstable = True
        reason = self.reason or ""
        before, marker, wide = reason.partition("wide: ")
        if marker and (not before or before.endswith("; ")):
            reason, wide = before.removesuffix("; "), marker + wide
        else:
            wide = ""
        if reason.startswith("unstable: "):
            reason = f"{reason}; {note}"
        else:
            reason = f"{reason}; unstable: {note}" if reason else f"unstable: {note}"
        self.reason = f"{reason}; {wide}" if wide else reason

    @property
    def marks(self) -> str:
        """How far to trust an ok figure, in the words the tables use: "unstable", "wide"
        or both; empty for a figure as precise as asked."""
        return marks(self.unstable, self.wide)


def marks(unstable: bool, wide: bool) -> str:
    """A figure's marks as the tables spell them: "unstable", "wide", both, or nothing."""
    return ", ".join(m for m, on in (("unstable", unstable), ("wide", wide)) if on)


def _status(value: object) -> Status:
    try:
        return Status(str(value))
    except ValueError:
        return Status.FAILED  # a status this version does not know: not a success


def result_files(directory: Path) -> Iterator[Path]:
    """Every job's result.json under a directory (earlier attempts, kept under a job's
    attempts/, are not runs of their own)."""
    for path in sorted(directory.rglob(JobDir.RESULT)):
        if JobDir.ATTEMPTS not in path.relative_to(directory).parts[:-1]:
            yield path


@dataclass(frozen=True)
class JobDir:
    """A job's directory and every file a job writes there."""

    path: Path

    RESULT = "result.json"
    STDOUT = "stdout.log"
    STDERR = "stderr.log"
    ATTEMPTS = "attempts"  # earlier attempts' files, attempts/<n>/ (never overwritten)

    @property
    def result(self) -> Path:
        return self.path / self.RESULT

    @property
    def stdout(self) -> Path:
        return self.path / self.STDOUT

    @property
    def stderr(self) -> Path:
        return self.path / self.STDERR

    def instance_log(self, rank: int) -> Path:
        return self.path / f"instance-{rank}.log"

    def instance_logs(self) -> list[Path]:
        return sorted(self.path.glob("instance-*.log"))

    def logs(self) -> list[Path]:
        return [self.stderr, self.stdout, *self.instance_logs()]

    def rendezvous(self, attempt: int) -> Path:
        """A multi-instance launch's rendezvous file, new for every attempt."""
        return self.path / f".rendezvous-{attempt + 1}-{time.time_ns()}"

    def read_result(self) -> Result | None:
        return Result.load(self.result)

    def keep_earlier_attempt(self) -> None:
        """Moves an earlier attempt's result and logs to attempts/<n>/ (nothing is lost)."""
        if not self.result.exists():
            return
        n = 1
        while (self.path / self.ATTEMPTS / str(n)).exists():
            n += 1
        target = self.path / self.ATTEMPTS / str(n)
        target.mkdir(parents=True)
        for path in (self.result, self.stdout, self.stderr, *self.instance_logs()):
            if path.exists():
                path.rename(target / path.name)
