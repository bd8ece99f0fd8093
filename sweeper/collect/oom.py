"""Out of memory: a failed job whose output matches one of its workload's `oom_patterns`
(conf/workload/*.yaml), or that the kernel's OOM killer ended."""

from __future__ import annotations

import re
from pathlib import Path

# Where the matching line is looked for: the end of a job's logs (an allocator's error is
# among the last things a dying program prints).
TAIL_BYTES = 1 << 20


def compile_oom_patterns(patterns: list[str]) -> list[re.Pattern[bytes]]:
    compiled = []
    for i, regex in enumerate(patterns):
        try:
            compiled.append(re.compile(regex.encode(), re.MULTILINE))
        except re.error as exc:
            raise ValueError(f"oom_patterns[{i}]: bad regex {regex!r}: {exc}") from None
    return compiled


def oom_line(logs: list[Path], patterns: list[re.Pattern[bytes]]) -> str | None:
    """The first log line that says the job ran out of memory, if any."""
    if not patterns:
        return None
    for log in logs:
        text = _tail(log)
        for pattern in patterns:
            match = pattern.search(text)
            if match:
                start = text.rfind(b"\n", 0, match.start()) + 1
                end = text.find(b"\n", match.end())
                line = text[start : end if end >= 0 else len(text)]
                return line.decode("utf-8", "replace").strip()[:300]
    return None


def _tail(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read()
    except OSError:
        return b""
