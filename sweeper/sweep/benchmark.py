"""The sweep: expand overrides into jobs, check every job before the first starts, launch
them where the config says they run (sweeper/where/), then write the sweep's report.

Hydra knows it as `hydra/sweeper=benchmark` (hydra_plugins/sweeper_benchmark/, the default
in conf/config.yaml). Unlike Hydra's basic sweeper it never stops at a failed job, always
writes the report, resumes a sweep, and reports an exit status for the whole sweep.

The steps are methods a sweep of another kind (the batch-size search, search/sweep.py)
reuses or overrides: `run_sweep` (the whole sweep), `checked_jobs`, `dry_run_or_check`,
`open_sweep_dir`, `launch` and `finish`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeper.config import yaml_text
from sweeper.config.compose import JobComposer
from sweeper.errors import UserError
from sweeper.job.outcome import outcome
from sweeper.process import interrupt
from sweeper.result.model import Result, Status
from sweeper.sweep import detach, finish, jobs, resume, slurm_chain
from sweeper.sweep.directory import SweepDirInUse, SweepLock, claim_new_dir
from sweeper.sweep.order import with_repeats
from sweeper.where import JobsRunner, SweepJob, preflight, runner_for


class BenchmarkSweep(Sweeper):
    def __init__(self, params: dict[str, str] | None = None) -> None:
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.runner: JobsRunner | None = None
        self.task_function: TaskFunction | None = None
        self.composer: JobComposer | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.task_function = task_function

    # -- Hydra's entry point -----------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        """A problem the user can fix is its message alone: Hydra would add a hint about a
        stack trace, and there is none to see."""
        outcome.started = True
        try:
            return self.run_sweep(arguments)
        except UserError as exc:
            print(exc, file=sys.stderr)
            outcome.refuse()
            return []

    def run_sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None
        overrides = with_repeats(
            self.job_overrides(arguments),
            int(self.config.get("repeats", 1)),
            int(self.config.get("repeat_seed", 0)),
        )
        if self.config.get("dry_run") or self.config.get("detach"):
            finish.stop_report_worker()  # one forked as the process started: no report here
        else:
            # Where none was forked as the process started (sweeper.__main__): now, before
            # the sweep's directory is locked (a process forked later holds a copy of the
            # lock's descriptor) and while this process is small.
            finish.start_report_worker()
        checked = self.checked_jobs(overrides)
        if self.dry_run_or_check(checked):
            outcome.report([Status.DRY_RUN] * len(checked), succeeded=True)
            return []
        sweep_dir, lock = self.open_sweep_dir(checked)
        if self.detached(sweep_dir, lock, len(checked)):
            return []
        finish.import_scipy()  # where the checks did not (a small sweep)

        def run() -> Any:
            returns, results = self.launch(checked, sweep_dir, first_num=0, sweep_size=len(checked))
            not_run = list(enumerate(overrides))[len(results) :]
            self.finish(results, not_run, sweep_dir)
            return [returns]  # Hydra's shape: the batches of JobReturns

        return self.holding(lock, sweep_dir, run)

    # -- the steps -------------------------------------------------------------------------
    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        """Cartesian product of sweep params (from config, then the command line)."""
        assert self.hydra_context is not None
        params = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        return jobs.expand(self.hydra_context, params)

    def compose(self, overrides: list[str]) -> DictConfig:
        return self._job_composer().compose(overrides)

    def _job_composer(self) -> JobComposer:
        assert self.hydra_context is not None and self.config is not None
        if self.composer is None:
            self.composer = JobComposer(self.hydra_context, self.config)
        return self.composer

    def checked_jobs(self, overrides: list[list[str]]) -> list[SweepJob]:
        """Every job composed and checked; all problems raised together (UserError)."""
        assert self.config is not None
        # Resolved (and cached: ${now:...}) before jobs are composed, which copy the cache:
        # every job then shares one sweep directory, as in Hydra.
        str(self.config.hydra.sweep.dir)
        # The jobs' evaluation needs SciPy: imported while a forked process checks jobs.
        meanwhile = None if self.config.get("dry_run") else finish.import_scipy
        # This composer (not one made after the sweep's directory is final) composes the
        # jobs that are composed only as they come to run: as they were checked.
        return jobs.compose_and_check(overrides, self._job_composer(), meanwhile)

    def dry_run_or_check(self, checked: list[SweepJob]) -> bool:
        """Prints the dry-run jobs' commands; True when every job is a dry run (nothing
        else happens then). Else this machine and the launcher are checked."""
        assert self.config is not None
        dry = [job for job in checked if job.spec.options.dry_run]
        for number, job in enumerate(dry):
            # Which configuration each command is, on stderr: stdout stays the commands.
            print(f"# job {number} of {len(dry)}: {job.spec.label}", file=sys.stderr, flush=True)
            print(shlex.join(job.spec.argv), flush=True)
        if dry and len(dry) == len(checked):
            return True
        jobs.check_machine(checked, preflight(self.config.hydra.launcher))
        return False

    def open_sweep_dir(self, checked: list[SweepJob]) -> tuple[Path, SweepLock]:
        """The sweep's directory, final and locked (released by the caller), with its
        multirun.yaml; the launcher set up for it."""
        assert self.config is not None
        wanted = Path(str(self.config.hydra.sweep.dir))
        try:
            sweep_dir = self._final_sweep_dir(checked)
            lock = SweepLock(sweep_dir)
            lock.acquire()
            yaml_text.save(self.config, sweep_dir / "multirun.yaml")
        except SweepDirInUse as exc:
            raise UserError([str(exc)]) from None
        except OSError as exc:
            where = exc.filename or wanted
            raise UserError(
                f"cannot write the sweep's directory ({where}: {exc.strerror}): give a "
                "writable one with hydra.sweep.dir=, or free space"
            ) from None
        if lock.took_over is not None:
            print(
                f"note: {sweep_dir} was left locked by a sweep that is no longer running "
                f"({lock.took_over.describe()}); taking it over",
                file=sys.stderr,
            )
        # Jobs composed from here on (a search's later rounds) start from the final config.
        self.composer = None
        self._set_up_runner()
        return sweep_dir, lock

    def launch(
        self,
        checked: Sequence[SweepJob],
        sweep_dir: Path,
        first_num: int,
        sweep_size: int | None = None,
    ) -> tuple[Sequence[JobReturn], list[Result]]:
        """Runs jobs numbered from first_num (one SLURM array); their returns and results,
        fewer than the jobs when the sweep was interrupted."""
        assert self.runner is not None
        returns = self.runner.run_jobs(checked, first_num, sweep_size)
        results = [
            finish.job_result(ret, job, sweep_dir, first_num + pos)
            for pos, (ret, job) in enumerate(zip(returns, checked, strict=False))
        ]
        return returns, results

    def finish(
        self,
        results: list[Result],
        not_run: list[tuple[int, list[str]]],
        sweep_dir: Path,
    ) -> None:
        """The verdicts that need every job, the report and the history; the outcome."""
        assert self.config is not None
        if results:
            finish.record_overlaps(results)
            finish.write_report(results, sweep_dir, self.config)
        statuses = [r.status for r in results] + [Status.NOT_RUN] * len(not_run)
        outcome.report(statuses, succeeded=all(s == Status.OK for s in statuses))
        finish.print_summary(results, sweep_dir, len(not_run))
        if interrupt.stop_requested():
            finish.print_interrupted(not_run, sweep_dir)

    def holding(self, lock: SweepLock, sweep_dir: Path, run: Callable[[], Any]) -> Any:
        """Runs the sweep holding its directory's lock. A detached sweep's driver step on
        SLURM that submitted jobs leaves the lock and the rest of the sweep to its next
        step, which runs once they have ended (sweeper/sweep/slurm_chain.py)."""
        assert self.config is not None
        try:
            return run()
        except slurm_chain.ContinueLater as later:
            detach.continue_after(sweep_dir, later, self.config)
            lock.hand_over(slurm_chain.current_chain_id() or "")
            outcome.report([], succeeded=True)
            return []
        finally:
            finish.stop_report_worker()  # no report was written (e.g. an error)
            lock.release()

    def detached(self, sweep_dir: Path, lock: SweepLock, jobs_checked: int) -> bool:
        """detach=true: the checked sweep handed to a driver of its own (sweep/detach.py),
        which takes the lock; True when it was (nothing more to do here)."""
        assert self.config is not None
        if not self.config.get("detach"):
            return False
        if self.runner is not None and self.runner.drives_on_slurm:
            problem = detach.password_problem(self.config)
            if problem:
                lock.release()
                raise UserError(problem)
            chain = slurm_chain.start_chain(sweep_dir)
            lock.hand_over(chain.chain_id)
            step = detach.start_slurm_driver(sweep_dir, chain, sys.argv[1:], self.config)
            driver = f"its driver runs as SLURM jobs, the first: {step}"
        else:
            lock.release()
            driver = f"driver pid {detach.start_driver(sweep_dir, sys.argv[1:])}"
        detach.announce(sweep_dir, driver)
        outcome.report([Status.DRY_RUN] * jobs_checked, succeeded=True)
        return True

    # -- the sweep's directory -------------------------------------------------------------
    def _final_sweep_dir(self, checked: list[SweepJob]) -> Path:
        """The sweep's directory, final from here on: the earlier sweep's for resume=true,
        the one given (hydra.sweep.dir=), else a new one of its own. The jobs' configs are
        read (composed: SweepJob.config) only where they move with it."""
        assert self.config is not None
        if any(job.spec.options.resume for job in checked):
            resume.use_earlier_sweep_dir(self.config, [job.config for job in checked])
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        chosen = any(o.startswith("hydra.sweep.dir=") for o in self.config.hydra.overrides.hydra)
        if chosen:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        else:
            claimed = claim_new_dir(sweep_dir)
            if claimed != sweep_dir:
                resume.move_sweep(claimed, [self.config, *(job.config for job in checked)])
                sweep_dir = claimed
        return sweep_dir

    def _set_up_runner(self) -> None:
        """Once the sweep's directory is final (a launcher resolves its settings, e.g.
        submitit's folder ${hydra.sweep.dir}/.submitit, when it is set up)."""
        assert self.hydra_context is not None and self.config is not None
        assert self.task_function is not None
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=self.task_function, config=self.config
        )
        self.runner = runner_for(launcher)
