"""Shared helpers: run the real CLI in a subprocess, locate the seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEED = REPO.parent / "shared" / "seed" / "000_002b7918859dba27.txt"
STAND_INS = Path(__file__).resolve().parent / "stand_ins"


def run_sweeper(
    *overrides: str,
    cwd: Path | None = None,
    env: dict[str, str | None] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`python -m sweeper <overrides>` as a user runs it; env values of None unset a variable."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *overrides],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path / "sweep"
