"""The end of a log: where a failed program says why."""

from __future__ import annotations

import os
from pathlib import Path


def tail_bytes(path: Path, max_bytes: int = 8192) -> bytes:
    """The last max_bytes of a file; nothing when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read()
    except OSError:
        return b""


def tail(path: Path, lines: int = 20, max_bytes: int = 8192) -> str:
    """The last lines of a log, for a failure's reason."""
    text = tail_bytes(path, max_bytes).decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])
