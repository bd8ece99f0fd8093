"""What a sweep writes is readable as any file the user writes, by any JSON parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import process_env


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_every_json_file_is_json_and_every_file_follows_the_umask(
    tmp_path: Path, standin_env: dict[str, str | None]
) -> None:
    """Two values, the first dropped: one value, no interval. result.json says null for it
    (NaN is not JSON: a parser in another language rejects the file), and the sweep's files
    get the mode the user's umask gives (0644 under umask 022), not mkstemp's 0600."""
    sweep = tmp_path / "sweep"
    argv = [
        sys.executable, "-m", "sweeper", "-m", "system=ipu_m2000", "mode=infer",
        "data=synthetic", "batch_size=1", "flags.repeat=2", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    proc = subprocess.run(
        argv,
        cwd=tmp_path,
        env=process_env({**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0"}),
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((sweep / "0" / "result.json").read_text(), parse_constant=_no_constant)
    assert result["throughput"]["n"] == 1
    assert result["throughput"]["ci95_low"] is None and result["throughput"]["ci95_high"] is None
    written = [p for p in sweep.rglob("*") if p.is_file() and ".hydra" not in p.parts]
    for path in written:
        if path.suffix == ".json":
            json.loads(path.read_text(), parse_constant=_no_constant)
    names = {p.relative_to(sweep).as_posix(): p.stat().st_mode & 0o777 for p in written}
    for name in ("results.csv", "results.json", "summary.md", "0/result.json"):
        assert names[name] == 0o644, (name, oct(names[name]))
