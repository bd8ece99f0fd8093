"""The sweep's own faults: a full disk stops it with one message, keeps what was written
and resumes once there is space; an output directory that cannot be written is refused
before any job; the collector's CLI answers bad input in one line.

The full disk is real: a small tmpfs mounted by the test (root; skipped where it cannot
mount). The workload is the Graphcore app stand-in.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import launched, read_csv_rows, run_sweeper

INFER = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]


@contextlib.contextmanager
def tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at mount_point for the block (root); skips the test where it cannot."""
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "size=160k") as mount_point:
        yield mount_point


def test_a_full_disk_stops_the_sweep_keeps_its_results_and_resumes(
    tmp_path, small_fs, standin_env
) -> None:
    sweep = small_fs / "sweep"
    sizes = ",".join(str(b) for b in range(1, 31) if b not in (3, 5, 6, 7, 9, 11))
    args = ["-m", *INFER, f"batch_size={sizes}", f"hydra.sweep.dir={sweep}"]
    proc = run_sweeper(*args, cwd=tmp_path, env=standin_env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
    assert "sweep stopped: No space left on device" in proc.stderr
    assert "job(s) not run" in proc.stderr and "resume=true" in proc.stderr
    written = {}
    for path in sweep.glob("*/result.json"):
        result = json.loads(path.read_text())  # never truncated
        written[path.parent.name] = path.read_bytes()
        assert result["status"] in ("ok", "failed")
    ok_before = [
        p for p in sweep.glob("*/result.json") if json.loads(p.read_text())["status"] == "ok"
    ]
    assert 0 < len(ok_before) < 24

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_fs)], check=True)
    resumed = run_sweeper(*args, "resume=true", cwd=tmp_path, env=standin_env)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_csv_rows(sweep / "results.csv")
    assert len(rows) == 24 and {r["status"] for r in rows} == {"ok"}
    for path in ok_before:  # the jobs done before the disk filled were not run again
        assert path.read_bytes() == written[path.parent.name]


def test_an_output_directory_that_cannot_be_written_is_refused(tmp_path, standin_env) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=64k") as read_only:
        sweep = read_only / "sweep"
        proc = run_sweeper(
            "-m", *INFER, "batch_size=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=standin_env
        )
        assert proc.returncode == 2
        assert f"cannot write the sweep's directory ({sweep}: Read-only file system)" in (
            proc.stderr
        )
        assert "Traceback" not in proc.stderr
        assert launched(tmp_path / "runs.log") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["parse", "missing.log"], "error: missing.log: No such file or directory"),
        (["report", "nowhere"], "error: nowhere: not a directory"),
        (["report", "empty"], "error: no result.json under empty"),
        (["compare", "missing", "empty"], "error: missing: no such file or directory"),
        (["compare", "--reference", "bad.yaml", "empty"], "error: bad.yaml: not YAML: "),
    ],
)
def test_the_collectors_cli_answers_bad_input_in_one_line(tmp_path, args, message) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.yaml").write_text("{not: [a, list")
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(message)


def test_a_job_that_prints_without_end_stays_within_its_log_limit(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        *INFER,
        "batch_size=13",
        "log_limit_mb=0.5",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 0, proc.stderr
    log = sweep / "0" / "stdout.log"
    assert 500_000 <= log.stat().st_size < 500_200  # the limit, and the marker line
    assert "[sweeper] log_limit_mb reached" in log.read_text()
    result = json.loads((sweep / "0" / "result.json").read_text())
    # Its metrics came from all of its output, past the limit too.
    assert result["status"] == "ok" and result["throughput"]["mean"] == 13 * 200.0
    assert result["throughput"]["n"] == 9
    assert "output beyond log_limit_mb=0.5 not kept" in result["reason"]
