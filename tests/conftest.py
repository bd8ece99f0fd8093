"""Shared helpers: run the real CLI in a subprocess, locate the seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.machine_lock"]

REPO = Path(__file__).resolve().parent.parent


def short_builtin(
    steps: int = 1, intervals: int = 3, optimize: str | None = "none", image_size: int | None = 64
) -> list[str]:
    """The one short measurement for built-in runs that do not test the measuring rule or
    the model's optimization: a fixed count of intervals of `steps` steps each (enough for
    the seed's rule: one dropped), no warm-up, the eager model (no TorchScript freeze:
    seconds per job), 64x64 images (the same layers at a twelfth of the work: most of the
    suite's time was these models' arithmetic on two cores); optimize=None keeps the
    workload's default, image_size=None the model's (where memory is the subject)."""
    return [
        f"workload.intervals={intervals}",
        f"workload.steps_per_interval={steps}",
        "workload.target_rel_ci=null",  # a fixed count, not the adaptive rule
        "workload.interval_s=null",
        "workload.warmup_max_s=0",
        *([f"model.image_size={image_size}"] if image_size else []),
        *([f"workload.optimize={optimize}"] if optimize else []),
    ]


def declare_program(
    conf: Path,
    name: str,
    source: str,
    throughput: str,
    unit: str,
    positional: tuple[str, ...] = (),
    args: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    **declaration: Any,
) -> Path:
    """A test's Python program (`source`, written beside `conf`) declared as the workload
    `name` in `conf`/workload/: run as `python3 PROGRAM POSITIONAL... ARGS`, its throughput read
    by one regex in `unit`; `metrics` and `declaration` add to its declaration. Returns
    `conf`, for --config-dir."""
    import yaml

    program = conf.parent / f"{name}.py"
    program.write_text(source)
    body = {
        "name": name,
        "command": {
            "program": "python3",
            "positional": [str(program), *positional],
            **({"args": args} if args else {}),
        },
        "metrics": {"formats": {name: {"throughput": throughput}}, "unit": unit, **(metrics or {})},
        **declaration,
    }
    (conf / "workload").mkdir(parents=True, exist_ok=True)
    (conf / "workload" / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return conf


SEED = REPO.parent / "shared" / "seed" / "000_002b7918859dba27.txt"
STAND_INS = Path(__file__).resolve().parent / "stand_ins"


def process_env(changes: dict[str, str | None] | None) -> dict[str, str]:
    """This process's environment with `changes` applied (None unsets a variable). A
    developer's own history database ($SWEEPER_HISTORY_URL) is never written by tests."""
    env = dict(os.environ)
    env.pop("SWEEPER_HISTORY_URL", None)
    for key, value in (changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_sweeper(
    *overrides: str,
    cwd: Path | None = None,
    env: dict[str, str | None] | None = None,
    timeout: float = 600,
    keep_flag_position: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`python -m sweeper <overrides>` as a user runs it; env values of None unset a variable.
    keep_flag_position: -m stays where it is among the overrides (else it goes first)."""
    argv = [sys.executable, "-m", "sweeper", *overrides]
    return subprocess.run(
        argv if keep_flag_position else _sweeper_argv(overrides),
        cwd=cwd or REPO,
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_sweeper(
    *overrides: str,
    cwd: Path,
    env: dict[str, str | None] | None = None,
    **popen_options: Any,
) -> subprocess.Popen[str]:
    """The same, left running (to be interrupted or watched)."""
    return subprocess.Popen(
        _sweeper_argv(overrides), cwd=cwd, env=process_env(env), text=True, **popen_options
    )


def driver_record(sweep: Path) -> dict[str, Any]:
    """A detached sweep's driver.json (sweeper/sweep/detach.py)."""
    record: dict[str, Any] = json.loads((sweep / "driver.json").read_text())
    return record


def wait_for_driver_exit(sweep: Path, timeout: float = 300) -> dict[str, Any]:
    """A detached sweep's driver.json once its driver recorded its exit status."""
    deadline = time.monotonic() + timeout
    while (info := driver_record(sweep))["exit_status"] is None:
        assert time.monotonic() < deadline, (sweep / "driver.log").read_text()[-3000:]
        time.sleep(0.3)
    return info


def wait_for_driver_gone(info: dict[str, Any], timeout: float = 20) -> None:
    """Until the driver's process has ended (its interpreter's teardown follows its exit
    status): no process is left behind to compete with the next test's measurements."""
    from sweeper.sweep import detach

    deadline = time.monotonic() + timeout
    while detach.driver_alive(info) is not False:
        assert time.monotonic() < deadline, "the detached sweep's driver is still running"
        time.sleep(0.2)


def _sweeper_argv(overrides: tuple[str, ...]) -> list[str]:
    # Hydra's argparse takes the overrides in one run: put -m (multirun) before them.
    args = ["-m", *(o for o in overrides if o != "-m")] if "-m" in overrides else list(overrides)
    return [sys.executable, "-m", "sweeper", *args]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path / "sweep"


GRAPHCORE_APP = STAND_INS / "graphcore_app"


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def launched(run_log: Path) -> list[dict]:
    """What the Graphcore stand-in recorded: one entry per process it ran."""
    import json

    if not run_log.exists():
        return []
    return [json.loads(line) for line in run_log.read_text().splitlines()]


@pytest.fixture
def standin_env(tmp_path: Path) -> dict[str, str | None]:
    """Environment for runs of the Graphcore stand-in: poprun stand-in on PATH, a run log."""
    return {
        "PATH": f"{STAND_INS}{os.pathsep}{os.environ['PATH']}",
        "STANDIN_RUN_LOG": str(tmp_path / "runs.log"),
        "STANDIN_HEAL": None,
        "DATASETS_DIR": None,
        "GRAPHCORE_CNN_APP_DIR": str(GRAPHCORE_APP),
    }
