"""A sweep's next job starts the moment the one before it ends (sweeper.job.attempt's
start_early, called by the local launcher), while the ended job's result is judged and
saved: the job started early is run once, a job that will not run after all is killed and
leaves nothing, a job to be retried runs again before the next one starts, and no job starts
early where Hydra's callbacks or a change of directory or environment come between.

Real processes of the Graphcore app stand-in throughout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.utils import JobRuntime
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig

import sweeper.config.schema  # noqa: F401  (registers the schema)
from sweeper.checks.preflight import check_job
from sweeper.config.compose import JobComposer
from sweeper.config.recipes import CONF_DIR
from sweeper.job import attempt
from sweeper.job.progress import JobProgress
from sweeper.job.spec import JobSpec, resolve_paths
from sweeper.result.model import JobDir, Status
from sweeper.where.local import LocalLauncher
from tests.conftest import GRAPHCORE_APP, launched, run_sweeper

INFER = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in's environment in this process; its run log."""
    run_log = tmp_path / "runs.log"
    monkeypatch.setenv("GRAPHCORE_CNN_APP_DIR", str(GRAPHCORE_APP))
    monkeypatch.setenv("STANDIN_RUN_LOG", str(run_log))
    monkeypatch.setenv("STANDIN_HEAL", "1")
    return run_log


def checked_job(tmp_path: Path, *overrides: str) -> JobSpec:
    return composed_job(tmp_path, *overrides)[1]


def composed_job(tmp_path: Path, *overrides: str) -> tuple[DictConfig, JobSpec]:
    JobRuntime.instance().set("name", "sweeper")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    master = loader.load_configuration(
        "config", overrides=[f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN
    )
    composer = JobComposer(HydraContext(config_loader=loader, callbacks=None), master)  # type: ignore[arg-type]
    cfg = composer.compose([*INFER, f"app_python={sys.executable}", *overrides])
    resolve_paths(cfg, str(tmp_path))
    spec, problems = check_job(cfg)
    assert spec is not None, problems
    return cfg, spec


def stand_ins_running() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if any("validation.py" in part for part in child.cmdline())
    ]


def test_a_job_started_early_is_the_one_its_attempt_runs(tmp_path: Path, stand_in: Path) -> None:
    job = checked_job(tmp_path, "batch_size=2")
    job_dir = JobDir(tmp_path / "0")
    job_dir.path.mkdir()
    assert attempt.can_start_early(job)
    attempt.start_early(job, job_dir)
    result = attempt.run_attempt(job, job_dir, 0, JobProgress(0, job.label, 1, job.unit))
    assert result.status == Status.OK, result.reason
    assert len(launched(stand_in)) == 1  # taken over, not started a second time
    assert result.mean is not None and job_dir.stdout.stat().st_size > 0


def test_a_job_started_early_that_will_not_run_leaves_nothing(
    tmp_path: Path, stand_in: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_STEP_S", "5")  # still running when it is discarded
    job = checked_job(tmp_path, "batch_size=2")
    job_dir = JobDir(tmp_path / "0")
    job_dir.path.mkdir()
    attempt.start_early(job, job_dir)
    deadline = time.monotonic() + 30
    while not launched(stand_in) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launched(stand_in), "the job started early never ran"
    assert len(stand_ins_running()) == 1
    attempt.discard_early()
    assert stand_ins_running() == []  # killed and reaped
    assert sorted(p.name for p in job_dir.path.iterdir()) == []  # its logs gone, no result
    attempt.discard_early()  # nothing left to discard: no error


def test_resume_rendezvous_and_dry_runs_are_not_started_early(tmp_path: Path) -> None:
    assert not attempt.can_start_early(checked_job(tmp_path, "resume=true"))
    assert not attempt.can_start_early(checked_job(tmp_path, "dry_run=true"))
    assert not attempt.can_start_early(
        checked_job(tmp_path, "launcher=mpirun", "system.instances=2")
    )


def test_a_job_to_retry_runs_again_before_the_next_one_starts(
    tmp_path: Path, standin_env: dict[str, str | None]
) -> None:
    # Batch size 3 crashes every time: its retry comes before batch size 4 starts, which
    # an early start would have begun as batch size 3's first attempt ended.
    proc = run_sweeper(
        "-m", *INFER, "batch_size=3,4,8", "retries=1", f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path, env=standin_env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    sizes = [
        run["argv"][run["argv"].index("--batch-size") + 1]
        for run in launched(tmp_path / "runs.log")
    ]
    assert sizes == ["3", "3", "4", "8"]


class _Callbacks:
    def __init__(self, callbacks: list[object]) -> None:
        self.callbacks = callbacks


def test_nothing_that_could_come_between_two_jobs_is_skipped(tmp_path: Path) -> None:
    """The next job starts early only where nothing in this process runs between the two
    jobs that it could depend on: Hydra's job callbacks, a retry, a change of working
    directory or of environment."""
    launcher = LocalLauncher()

    def may(callbacks: list[object], *changes: str) -> bool:
        launcher.hydra_context = HydraContext(config_loader=None, callbacks=_Callbacks(callbacks))  # type: ignore[arg-type]
        before = composed_job(tmp_path, "batch_size=1")
        after = composed_job(tmp_path, "batch_size=2", *changes)
        return launcher._may_start_early(before[0], before[1], after[0], after[1])

    assert may([])
    assert not may([object()])  # a job callback: on_job_start comes before the job starts
    assert not may([], "hydra.job.chdir=true")
    assert not may([], "+hydra.job.env_set.SOMETHING=1")
    config, job = composed_job(tmp_path, "batch_size=1", "retries=1")
    nxt = composed_job(tmp_path, "batch_size=2")
    launcher.hydra_context = HydraContext(config_loader=None, callbacks=_Callbacks([]))  # type: ignore[arg-type]
    assert not launcher._may_start_early(config, job, *nxt)  # its retry comes first
