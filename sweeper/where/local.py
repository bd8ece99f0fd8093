"""`hydra/launcher=local` (the default): runs a sweep's jobs one after another on this
machine, from the configs the sweep has already composed and checked.

Hydra's BasicLauncher composes every job again before running it (~100 ms a job here), and
its run_job deep-copies the config twice and writes the `.hydra/` files through PyYAML's
pure-Python emitter. This launcher runs each job from the sweep's composed config and writes
the same job directory: `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` (the same
bytes, through libyaml), the job's log file, Hydra's callbacks and JobReturn, and Hydra's own
log lines. tests/test_local_launcher.py compares the directories with Hydra's.

Jobs run back to back, as in a shell loop: the next job's directory is written while the
current job's process starts up (sweeper.process.runner.while_job_runs), and the next job's
process starts the moment the current one's ends (when_job_ends, sweeper.job.attempt's
start_early), while the ended job's result is judged and saved; unless something between
them could hold the next one back or change it (_may_start_early: a retry, Hydra's job
callbacks, a job changing directory or environment).

Every job's benchmark still runs in a process of its own (sweeper.process.runner), so in-process
launching shares nothing between measured runs.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _flush_loggers,
    configure_log,
    env_override,
    filter_overrides,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict, read_write

from sweeper.config.compose import JobComposer
from sweeper.config.yaml_text import yaml_text
from sweeper.job import attempt
from sweeper.job.spec import JobSpec
from sweeper.job.task import CheckedJob, run_benchmark
from sweeper.process import interrupt
from sweeper.process.runner import when_job_ends, while_job_runs
from sweeper.result.model import JobDir
from sweeper.where import JobConfigs, JobsRunner, SweepJob

log = logging.getLogger(__name__)


def _save_job_configs(config: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml as Hydra writes them, from one
    conversion of the job's config (Hydra converts three copies)."""
    container = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
    assert isinstance(container, dict)
    hydra_node = container.pop("hydra")
    directory = Path(str(config.hydra.runtime.output_dir)) / str(config.hydra.output_subdir)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("config.yaml", container),
        ("hydra.yaml", {"hydra": hydra_node}),
        ("overrides.yaml", hydra_node["overrides"]["task"]),
    ):
        (directory / name).write_text(yaml_text(data), encoding="utf-8")


class _SharingPickler(pickle.Pickler):
    """Pickles a config but one node, which it only refers to."""

    def __init__(self, file: io.BytesIO, shared: object) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def persistent_id(self, obj: object) -> str | None:
        return "shared" if obj is self.shared else None


class _SharingUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, shared: object) -> None:
        super().__init__(file)
        self.shared = shared

    def persistent_load(self, pid: object) -> object:
        return self.shared


def _copy_without_hydra(config: DictConfig) -> DictConfig:
    """The task's config: a copy of the job's without Hydra's node, as Hydra's run_job
    makes, at a third of the cost (a pickle round trip that skips the `hydra` subtree,
    instead of a deepcopy of everything)."""
    hydra_node = config._get_node("hydra")
    buffer = io.BytesIO()
    _SharingPickler(buffer, hydra_node).dump(config)
    buffer.seek(0)
    task_cfg = _SharingUnpickler(buffer, hydra_node).load()
    assert isinstance(task_cfg, DictConfig)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]  # the reference only: the job's node stays where it is
    return task_cfg


@contextlib.contextmanager
def _hydra_config_of(config: DictConfig) -> Iterator[DictConfig]:
    """HydraConfig is this job's while inside: what HydraConfig.set_config(config) sets, but
    sharing the job's `hydra` node instead of deep-copying it (twice per job in Hydra's
    run_job; the config is this job's own). The previous one is back afterwards."""
    OmegaConf.set_readonly(config.hydra, True)
    view = OmegaConf.create({})
    with flag_override(view, "no_deepcopy_set_nodes", True):
        view.hydra = config.hydra
    view.hydra._set_parent(config)  # interpolations in it resolve against the job's config
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.cfg = view  # type: ignore[assignment]  # as Hydra does
    try:
        yield view
    finally:
        instance.cfg = previous


@contextlib.contextmanager
def _working_dir(path: str | None) -> Iterator[None]:
    """Inside `path` (hydra.job.chdir=true), or where we are (None). contextlib.chdir is
    Python 3.11+."""
    previous = os.getcwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        if path is not None:
            os.chdir(previous)


def _changes_dir(config: DictConfig, warn: bool = True) -> bool:
    """hydra.job.chdir, or, unset, what Hydra's run_job does: jobs of an app whose
    version_base is below 1.2 run inside their own directory (with a warning, where warn)."""
    setting = config.hydra.job.chdir
    if setting is not None:
        return bool(setting)
    if version.base_at_least("1.2"):
        return False
    if warn:
        warnings.warn(
            "hydra.job.chdir is unset and the app's version_base is below 1.2: the job runs in "
            "its output directory, as in Hydra 1.1 (set hydra.job.chdir to choose)",
            UserWarning,
            stacklevel=2,
        )
    return True


@dataclass
class _PreparedJob:
    output_dir: str
    task_cfg: DictConfig | None  # None: nothing will read it (_prepare)
    job_logging: Any  # a DictConfig, or None where Hydra's job logging is off
    log_files: list[Path]  # created empty, for the job to write

    def unstarted(self) -> None:
        """The job will not run (the sweep stopped): its empty log files go, so that its
        directory does not look like that of a job that ran and printed nothing."""
        for path in self.log_files:
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()


def _resolved(node: Any) -> Any:
    """A logging config with its interpolations resolved now (for Hydra's configure_log,
    which would resolve them again, parsing each interpolation, on the job's critical path)."""
    if node is None:
        return None
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))


def _prepare(config: DictConfig, idx: int, launch_dir: str, task_copy: bool = True) -> _PreparedJob:
    """A job's number, output directory, `.hydra/` files and the task's copy of its config:
    what Hydra's run_job does before the task, bar what touches logging. Relative directories
    are taken from launch_dir, wherever the job running meanwhile has gone (hydra.job.chdir).
    task_copy=False: no copy (2 ms a job), where nothing reads it (launch_composed)."""
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.job.id = idx
        config.hydra.job.num = idx
    # As Hydra: the job's Hydra config is set, so that the directory may use ${hydra:...}.
    with _hydra_config_of(config):
        output_dir = os.path.join(
            str(OmegaConf.select(config, "hydra.sweep.dir")),
            str(OmegaConf.select(config, "hydra.sweep.subdir")),
        )
    absolute = os.path.normpath(os.path.join(launch_dir, output_dir))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = absolute
    Path(absolute).mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        _save_job_configs(config)
    task_cfg = _copy_without_hydra(config) if task_copy else None
    # Its log file's name comes from the output directory and job name, both final now.
    job_logging = _resolved(config.hydra.job_logging)
    return _PreparedJob(
        output_dir, task_cfg, job_logging, _create_log_files(Path(absolute), job_logging)
    )


def _create_log_files(job_dir: Path, job_logging: Any) -> list[Path]:
    """The files the job will log to, created now (empty) rather than when it starts:
    creating a file costs the kernel more than half a millisecond on some filesystems,
    three times per job on the critical path; opening one that exists costs nothing.
    Written by the job's process and logging handlers as before (a log that exists, from a
    resumed job's earlier run, is left as it is)."""
    handlers = (job_logging or {}).get("handlers") or {}
    logs = JobDir(job_dir)
    paths = [logs.stdout, logs.stderr]
    # A relative name is the job's working directory's: not known here (hydra.job.chdir).
    named = [Path(str(h["filename"])) for h in handlers.values() if h.get("filename")]
    paths += [path for path in named if path.is_absolute()]
    created = []
    for path in paths:
        try:  # an earlier run's log is left as it is
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        created.append(path)
    return created


class LocalLauncher(Launcher, JobsRunner):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Hydra's launcher interface, for any sweeper: composes, then runs."""
        assert self.hydra_context is not None and self.config is not None
        composer = JobComposer(self.hydra_context, self.config)
        configs = [composer.compose(list(overrides)) for overrides in job_overrides]
        return self.launch_composed(configs, initial_job_idx)

    def run_jobs(
        self, jobs: Sequence[SweepJob], first_num: int, sweep_size: int | None = None
    ) -> Sequence[JobReturn]:
        """The sweep's checked jobs, each run from its config and spec (neither built again)."""
        tasks = [
            functools.partial(run_benchmark, checked=CheckedJob(job.spec, sweep_size))
            for job in jobs
        ]
        specs = [job.spec for job in jobs]
        return self.launch_composed(JobConfigs(jobs), first_num, tasks, specs)

    def launch_composed(
        self,
        configs: Sequence[DictConfig],
        initial_job_idx: int,
        tasks: Sequence[TaskFunction] | None = None,
        specs: Sequence[JobSpec] | None = None,
    ) -> list[JobReturn]:
        """Runs jobs from their composed configs (which become the jobs' own: not reused);
        fewer than given if the sweep is interrupted (sweeper.process.interrupt). tasks: each
        job's own task function, which reads the spec it was made with, not the config it is
        given (else the launcher's task function); specs: their jobs, where a job may start the
        moment the one before it ends (_may_start_early)."""
        assert self.config is not None and self.task_function is not None
        launch_dir = os.getcwd()
        # The task's copy of a job's config (Hydra's JobReturn.cfg) is made where it is read:
        # by the launcher's task function, or by Hydra's job callbacks.
        task_copy = tasks is None or self._has_job_callbacks()
        setup_globals()
        hydra_logging = _resolved(self.config.hydra.hydra_logging)
        configure_log(hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(configs)} jobs locally")
        runs: list[JobReturn] = []
        ahead: dict[int, _PreparedJob] = {}
        # Prepared jobs that may start the moment the job before them ends: each one's spec
        # and directory.
        early: dict[int, tuple[JobSpec, JobDir]] = {}

        def prepare_ahead(pos: int) -> None:
            try:
                ahead[pos] = _prepare(configs[pos], initial_job_idx + pos, launch_dir, task_copy)
                before = pos - 1
                if specs is not None and self._may_start_early(
                    configs[before], specs[before], configs[pos], specs[pos]
                ):
                    job_dir = JobDir(Path(str(configs[pos].hydra.runtime.output_dir)))
                    early[pos] = (specs[pos], job_dir)
            except Exception:  # prepared again in its turn, where the error is raised
                pass

        def start_early(pos: int) -> None:
            """Job pos's process started as the job before it ends (that job's result is
            judged and saved while this one runs); decided while that job ran, bar a stop."""
            ready = early.pop(pos, None)
            if ready is None or interrupt.stop_requested():
                return
            try:
                attempt.start_early(*ready)
            except Exception:  # started in its turn, where the error is reported
                attempt.discard_early()

        for pos, config in enumerate(configs):
            if interrupt.stop_requested():
                break  # the sweep was asked to stop: no further job starts
            idx = initial_job_idx + pos
            try:
                job = ahead.pop(pos, None) or _prepare(config, idx, launch_dir, task_copy)
            except OSError as exc:
                if not interrupt.out_of_space(exc):
                    raise
                interrupt.stop_for_disk(exc)
                break
            if pos + 1 < len(configs):
                # The next job's directory is written while this job's process starts up
                # (interpreter, imports, model build), not between the two jobs.
                while_job_runs.add(functools.partial(prepare_ahead, pos + 1))
                when_job_ends.add(functools.partial(start_early, pos + 1))
            log.info(f"\t#{idx} : {' '.join(filter_overrides(config.hydra.overrides.task))}")
            try:
                runs.append(self._run_job(config, job, tasks[pos] if tasks else self.task_function))
            except OSError as exc:  # e.g. the job's log file cannot be created
                if not interrupt.out_of_space(exc):
                    raise
                interrupt.stop_for_disk(exc)
                break
            finally:
                while_job_runs.clear()  # no process started (dry run, resumed job): in turn
                when_job_ends.clear()
            configure_log(hydra_logging, self.config.hydra.verbose)
        attempt.discard_early()  # the sweep stopped before its turn
        for unstarted in ahead.values():
            unstarted.unstarted()
        return runs

    def _may_start_early(
        self, config: DictConfig, job: JobSpec, next_config: DictConfig, next_job: JobSpec
    ) -> bool:
        """Whether the next job may start the moment this one ends, before this one's result
        is judged (the sweep's stop aside: asked then): nothing about this job can still
        hold it back (a retry) and nothing runs in this process between them that it could
        depend on (Hydra's job callbacks; a change of working directory or environment)."""
        return (
            not self._has_job_callbacks()
            and job.options.retries == 0
            and attempt.can_start_early(next_job)
            and not _changes_dir(config, warn=False)
            and not _changes_dir(next_config, warn=False)
            and config.hydra.job.env_set == next_config.hydra.job.env_set
        )

    def _has_job_callbacks(self) -> bool:
        """Whether Hydra calls any callback of the app's around each job."""
        assert self.hydra_context is not None
        return bool(getattr(self.hydra_context.callbacks, "callbacks", None))

    def _run_job(self, config: DictConfig, job: _PreparedJob, task: TaskFunction) -> JobReturn:
        """hydra.core.utils.run_job's steps and outputs, without its two deep copies."""
        assert self.hydra_context is not None and self.task_function is not None
        callbacks = self.hydra_context.callbacks
        chdir = _changes_dir(config)
        with _hydra_config_of(config) as hydra_cfg, _working_dir(job.output_dir if chdir else None):
            ret = JobReturn()
            ret.cfg = job.task_cfg  # None where nothing reads it
            ret.hydra_cfg = hydra_cfg
            ret.overrides = [str(o) for o in config.hydra.overrides.task]
            ret.working_dir = job.output_dir if chdir else os.getcwd()
            configure_log(job.job_logging, config.hydra.verbose)
            with env_override(hydra_cfg.hydra.job.env_set):
                callbacks.on_job_start(config=config, task_function=self.task_function)
                try:
                    ret.return_value = task(config if job.task_cfg is None else job.task_cfg)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            callbacks.on_job_end(config=config, job_return=ret)
        return ret
