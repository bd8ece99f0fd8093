"""Selecting from the history: `key=value` filters and `--since` periods, as the CLI and the
site take them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pandas as pd

from sweeper.history.tables import IDENTITY

FILTER_KEYS = (
    *IDENTITY,
    "metric",
    "status",
    "host",
    "cpu_model",
    "accelerator",
    "git_commit",
    "sweep",
)
_PERIOD = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class QueryError(ValueError):
    pass


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`30d`, `12h`, `2w`, `90m`, or a date/time (ISO 8601, UTC when it has no zone)."""
    if not text:
        return None
    now = now or datetime.now(timezone.utc)
    match = _PERIOD.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            f"--since {text!r}: give a period such as 30d, 12h, 2w, or a date such as 2026-11-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def parse_filters(items: list[str]) -> dict[str, str]:
    filters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise QueryError(
                f"{item!r}: a filter is key=value with key one of {', '.join(FILTER_KEYS)}"
            )
        filters[key] = value
    return filters


def select(frame: pd.DataFrame, filters: dict[str, str]) -> pd.DataFrame:
    for key, value in filters.items():
        if frame.empty:
            break
        frame = frame[frame[key].astype(str) == value]
    return frame
