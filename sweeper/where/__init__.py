"""Where a sweep's jobs run (Hydra's `hydra/launcher`): this machine, one job after another
(local.py), or a SLURM cluster (slurm.py). Each owns its checks before any job starts and
how it runs a batch of checked jobs, behind `JobsRunner`; any other Hydra launcher runs
them through Hydra's own interface (`HydraLauncherRunner`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, overload

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.utils import get_class
from omegaconf import DictConfig

from sweeper.job.spec import JobSpec


class SweepJob:
    """A job of the sweep: its overrides, its composed config and its checked spec.

    The config may be given as a function that composes it, called when it is first read: a
    job is checked on its own keys (sweeper.sweep.jobs.compose_and_check), and composed
    whole only when it is about to run, while the job before it runs (not before the first
    job starts)."""

    def __init__(
        self,
        overrides: list[str],
        config: DictConfig | Callable[[], DictConfig],
        spec: JobSpec,
        machine_problems: list[str] | None = None,
    ) -> None:
        self.overrides = overrides
        self.spec = spec
        # This machine's problems with it (preflight.check_environment), where they were
        # found while the jobs were checked; None: not yet (sweeper.sweep.jobs.check_machine
        # asks).
        self.machine_problems = machine_problems
        if isinstance(config, DictConfig):
            self.__dict__["config"] = config  # cached_property's own slot: never composed
        else:
            self._compose = config

    @functools.cached_property
    def config(self) -> DictConfig:
        return self._compose()


class JobConfigs(Sequence[DictConfig]):
    """The jobs' configs in order, each composed when first read (SweepJob.config)."""

    def __init__(self, jobs: Sequence[SweepJob]) -> None:
        self._jobs = jobs

    def __len__(self) -> int:
        return len(self._jobs)

    @overload
    def __getitem__(self, pos: int) -> DictConfig: ...

    @overload
    def __getitem__(self, pos: slice) -> Sequence[DictConfig]: ...

    def __getitem__(self, pos: int | slice) -> DictConfig | Sequence[DictConfig]:
        if isinstance(pos, slice):
            return [job.config for job in self._jobs[pos]]
        return self._jobs[pos].config


class JobsRunner:
    """The sweep's side of a launcher: what it checks before any job starts, and how it
    runs a batch of checked jobs (one SLURM array; one job after another locally)."""

    # A detached sweep's driver runs as SLURM jobs of its own (sweeper/sweep/slurm_chain.py)
    # where the jobs do; else as a process of the submitting host.
    drives_on_slurm = False

    @classmethod
    def preflight(cls, launcher_config: DictConfig) -> list[str]:
        """Problems with where the jobs would run, found before any job starts."""
        return []

    def run_jobs(
        self, jobs: Sequence[SweepJob], first_num: int, sweep_size: int | None = None
    ) -> Sequence[JobReturn]:
        """The jobs' returns, in order; fewer than the jobs when the sweep was stopped.
        sweep_size: the sweep's jobs in all, where it is known (for progress lines)."""
        raise NotImplementedError


class HydraLauncherRunner(JobsRunner):
    """Any other Hydra launcher (e.g. submitit_local): its jobs composed again by it."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher

    def run_jobs(
        self, jobs: Sequence[SweepJob], first_num: int, sweep_size: int | None = None
    ) -> Sequence[JobReturn]:
        return self.launcher.launch([job.overrides for job in jobs], initial_job_idx=first_num)


def runner_for(launcher: Launcher) -> JobsRunner:
    return launcher if isinstance(launcher, JobsRunner) else HydraLauncherRunner(launcher)


def preflight(launcher_config: DictConfig) -> list[str]:
    """The chosen launcher's own checks (hydra.launcher._target_), before it is set up."""
    target: Any = launcher_config.get("_target_")
    try:
        cls = get_class(str(target)) if target else None
    except Exception:  # Hydra reports a launcher it cannot load when it sets it up
        return []
    return (
        cls.preflight(launcher_config)
        if isinstance(cls, type) and issubclass(cls, JobsRunner)
        else []
    )
