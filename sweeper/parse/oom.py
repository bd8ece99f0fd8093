"""Out of memory: a failed job whose output matches one of its workload's `oom_patterns`
(conf/workload/*.yaml), or that the kernel's OOM killer ended."""

from __future__ import annotations

import re
from pathlib import Path

from sweeper.parse.logtail import tail_bytes

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
        text = tail_bytes(log, TAIL_BYTES)
        for pattern in patterns:
            match = pattern.search(text)
            if match:
                start = text.rfind(b"\n", 0, match.start()) + 1
                end = text.find(b"\n", match.end())
                line = text[start : end if end >= 0 else len(text)]
                return line.decode("utf-8", "replace").strip()[:300]
    return None


def kernel_oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed in this process's memory
    cgroup (v2 memory.events, v1 memory.oom_control); None where that cannot be read."""
    for path in _oom_count_files():
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def _oom_count_files() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, group = line.split(":", 2)
        group = group.lstrip("/")
        if controllers == "":  # cgroup v2
            found += [root / group / "memory.events", root / "memory.events"]
        elif "memory" in controllers.split(","):
            found += [
                root / "memory" / group / "memory.oom_control",
                root / "memory" / "memory.oom_control",
            ]
    return found


def sigkill_verdict(before: int | None, after: int | None) -> tuple[bool, str]:
    """A job killed by SIGKILL that was not the sweeper's time limit: (out of memory?, why)."""
    if before is not None and after is not None and after > before:
        return True, "killed by the kernel's OOM killer (the memory cgroup's oom_kill count rose)"
    if before is None or after is None:
        return False, (
            "killed by SIGKILL from outside the sweeper (not its time limit); the kernel's "
            "OOM count could not be read here"
        )
    return False, (
        "killed by SIGKILL from outside the sweeper (not its time limit, nor the kernel's OOM "
        "killer in this memory cgroup)"
    )
