"""Where the built-in workload keeps what it counts and measures once per machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sweeper" / "work.json"
