"""The sweep: expand overrides into jobs, check every job before the first starts, launch
them through Hydra's configured launcher, then write the sweep's report.

Hydra knows it as `hydra/sweeper=benchmark` (hydra_plugins/sweeper_benchmark/, the default
in conf/config.yaml). Unlike
Hydra's basic sweeper it never stops at a failed job, always writes the report, resumes a
sweep, and reports an exit status for the whole sweep.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import random
import shlex
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sweeper.checks.preflight import check_environment, check_job, check_no_orphans, check_slurm
from sweeper.config.compose import JobComposer
from sweeper.errors import UserError
from sweeper.history import record as history
from sweeper.job.progress import SWEEP_SIZE_ENV
from sweeper.job.spec import JobSpec, resolve_paths
from sweeper.process import interrupt
from sweeper.result.evaluate import CANCELLED, FAILED, TIMEOUT
from sweeper.result.store import RESULT_FILE, RUN_OPTIONS, choices, read_result, write_json_atomic
from sweeper.sweep.directory import SweepDirInUse, SweepLock, claim_new_dir, in_use
from sweeper.where.local import LocalLauncher

NOT_RUN = "not-run"  # a job the sweep did not start (it was interrupted)


@dataclass
class SweepOutcome:
    sweep_dir: Path
    statuses: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        # flaky-boundary: a batch-size search that gave its answers, with a memory boundary
        # that was not repeatable (reported with its evidence, not a failure).
        return all(status in ("ok", "dry-run", "flaky-boundary") for status in self.statuses)


# The last sweep of this process, for the exit status (see sweeper/__main__.py).
last_outcome: SweepOutcome | None = None


class BenchmarkSweep(Sweeper):
    def __init__(self, params: dict[str, str] | None = None) -> None:
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.task_function: TaskFunction | None = None
        self.composer: JobComposer | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.task_function = task_function

    def _setup_launcher(self) -> None:
        """Once the sweep's directory is final (a launcher resolves its settings, e.g.
        submitit's folder ${hydra.sweep.dir}/.submitit, when it is set up)."""
        from hydra.core.plugins import Plugins

        assert self.hydra_context is not None and self.config is not None
        assert self.task_function is not None
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=self.task_function, config=self.config
        )

    # -- expansion ---------------------------------------------------------------------
    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        """Cartesian product of sweep params (from config, then the command line)."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        overrides = parser.parse_overrides(params)
        return BasicSweeper.split_arguments(overrides, None)[0]

    def compose(self, overrides: list[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        if self.composer is None:
            self.composer = JobComposer(self.hydra_context, self.config)
        return self.composer.compose(overrides)

    # -- the sweep -----------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        """Hydra's entry point. A problem the user can fix is its message alone: Hydra would
        add a hint about a stack trace, and there is none to see."""
        global last_outcome
        try:
            return self._sweep(arguments)
        except UserError as exc:
            print(exc, file=sys.stderr)
            last_outcome = SweepOutcome(Path("."), ["error"])
            return []

    def _sweep(self, arguments: list[str]) -> Any:
        global last_outcome
        assert self.config is not None
        jobs = with_repeats(
            self.job_overrides(arguments),
            int(self.config.get("repeats", 1)),
            int(self.config.get("repeat_seed", 0)),
        )
        # Resolved (and cached: ${now:...}) before jobs are composed, which copy the cache:
        # every job then shares one sweep directory, as in Hydra.
        str(self.config.hydra.sweep.dir)
        with _composing():
            checked = self._compose_and_check(jobs)
        configs = [cfg for cfg, _ in checked]

        dry = [spec for cfg, spec in checked if cfg.dry_run]
        for spec in dry:
            print(shlex.join(spec.argv), flush=True)
        if len(dry) == len(configs):
            last_outcome = SweepOutcome(Path("."), ["dry-run"] * len(configs))
            return []

        self._preflight(checked)
        sweep_dir, lock = self._open_sweep_dir(configs)
        try:
            return self._run(jobs, configs, sweep_dir)
        finally:
            lock.release()

    def _open_sweep_dir(self, configs: list[DictConfig]) -> tuple[Path, SweepLock]:
        """The sweep's directory, final and locked (released by the caller), with its
        multirun.yaml."""
        assert self.config is not None
        wanted = Path(str(self.config.hydra.sweep.dir))
        try:
            sweep_dir = self._sweep_dir(configs)
            lock = SweepLock(sweep_dir)
            lock.acquire()
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
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
        return sweep_dir, lock

    def _sweep_dir(self, configs: list[DictConfig]) -> Path:
        """The sweep's directory, final from here on: the earlier sweep's for resume=true,
        the one given (hydra.sweep.dir=), else a new one of its own."""
        assert self.config is not None
        if any(cfg.resume for cfg in configs):
            self._use_earlier_sweep_dir(configs)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        chosen = any(o.startswith("hydra.sweep.dir=") for o in self.config.hydra.overrides.hydra)
        if chosen:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        else:
            claimed = claim_new_dir(sweep_dir)
            if claimed != sweep_dir:
                _move_sweep(claimed, [self.config, *configs])
                sweep_dir = claimed
        # Jobs composed from here on (a search's later rounds) start from the final config.
        self.composer = None
        self._setup_launcher()
        return sweep_dir

    def _run(self, jobs: list[list[str]], configs: list[DictConfig], sweep_dir: Path) -> Any:
        os.environ[SWEEP_SIZE_ENV] = str(len(jobs))
        _preload_report_libraries()
        try:
            returns, results = self._launch(jobs, configs, sweep_dir, first_num=0)
        finally:
            os.environ.pop(SWEEP_SIZE_ENV, None)
        not_run = list(enumerate(jobs))[len(results) :]
        self._report(results, not_run, sweep_dir)
        return [returns]  # Hydra's shape: the batches of JobReturns

    def _launch(
        self, jobs: list[list[str]], configs: list[DictConfig], sweep_dir: Path, first_num: int
    ) -> tuple[Sequence[JobReturn], list[dict[str, Any]]]:
        """Runs jobs numbered from first_num through the launcher (one SLURM array); their
        returns and results, fewer than the jobs when the sweep was interrupted."""
        assert self.launcher is not None
        returns: Sequence[JobReturn]
        if isinstance(self.launcher, LocalLauncher):
            returns = self.launcher.launch_composed(configs, initial_job_idx=first_num)
        else:
            returns = _launch_on_scheduler(self.launcher, jobs, first_num)
        ran = len(returns)
        return returns, [
            self._result(ret, cfg, overrides, sweep_dir, first_num + pos)
            for pos, (ret, cfg, overrides) in enumerate(
                zip(returns, configs[:ran], jobs[:ran], strict=True)
            )
        ]

    def _report(
        self,
        results: list[dict[str, Any]],
        not_run: list[tuple[int, list[str]]],
        sweep_dir: Path,
    ) -> None:
        """The sweep's table, report files and summary; its outcome (the exit status)."""
        global last_outcome
        if results:
            from sweeper.collect import report

            frame = report.results_frame(results)
            report.print_table(frame)
            try:
                report.write_report(frame, sweep_dir)
            except OSError as exc:  # files already there stay whole (written by rename)
                if interrupt.out_of_space(exc):
                    interrupt.stop_for_disk(exc)
                print(
                    f"error: the report was not written: {exc.strerror}: {exc.filename}",
                    file=sys.stderr,
                )
            if self.config is not None:
                history.record(self.config, sweep_dir)
        statuses = [r["status"] for r in results] + [NOT_RUN] * len(not_run)
        last_outcome = SweepOutcome(sweep_dir, statuses)
        self._print_summary(results, sweep_dir)
        if interrupt.stop_requested():
            _print_interrupted(not_run, sweep_dir)

    def _compose_and_check(self, jobs: list[list[str]]) -> list[tuple[DictConfig, JobSpec]]:
        """Composes and checks every job; all problems are reported together, before any
        job starts."""
        checked: list[tuple[DictConfig, JobSpec]] = []
        # Each problem once, with the jobs it concerns (a 1,000-job sweep of a combination
        # that does not exist is one problem, not a thousand).
        problems: dict[str, list[str]] = {}
        launch_dir = os.getcwd()
        for num, overrides in enumerate(jobs):
            where = f"job {num} ({' '.join(overrides)})" if len(jobs) > 1 else "config"
            try:
                cfg = self.compose(overrides)
            except (HydraException, OmegaConfBaseException) as exc:
                problems.setdefault(_first_line(exc), []).append(where)
                continue
            resolve_paths(cfg, launch_dir)
            spec, found = check_job(cfg)
            for problem in found:
                problems.setdefault(problem, []).append(where)
            if spec is not None:
                checked.append((cfg, spec))
        if problems:
            raise UserError([f"{_jobs(where)}: {problem}" for problem, where in problems.items()])
        return checked

    def _preflight(self, checked: list[tuple[DictConfig, JobSpec]]) -> None:
        assert self.config is not None
        problems: list[str] = check_no_orphans()
        launcher = self.config.hydra.launcher
        if "slurm" in str(launcher.get("_target_", "")).lower():
            problems += check_slurm(launcher.get("partition"))
        seen: set[str] = set()
        for cfg, spec in checked:
            if cfg.dry_run:
                continue
            for problem in check_environment(cfg, spec):
                if problem not in seen:
                    seen.add(problem)
                    problems.append(problem)
        if problems:
            raise UserError(problems)

    def _use_earlier_sweep_dir(self, configs: list[DictConfig]) -> None:
        """resume=true without hydra.sweep.dir: continue the newest sweep that ran the same
        command (same overrides but for resume). The jobs' composed configs move there too,
        as if hydra.sweep.dir had been given."""
        assert self.config is not None
        hydra_overrides = list(self.config.hydra.overrides.hydra)
        if any(o.startswith("hydra.sweep.dir=") for o in hydra_overrides):
            return
        wanted = _without_run_options(list(self.config.hydra.overrides.task))
        root = Path(str(self.config.hydra.sweep.dir)).parent
        candidates = sorted(root.glob("*/multirun.yaml"), key=lambda p: p.stat().st_mtime)
        for path in reversed(candidates):
            earlier = OmegaConf.load(path)
            task = list(OmegaConf.select(earlier, "hydra.overrides.task", default=[]) or [])
            if _without_run_options(task) == wanted and not in_use(path.parent):
                _move_sweep(path.parent, [self.config, *configs])
                print(f"resuming the sweep in {path.parent}", file=sys.stderr)
                return
        print(
            "resume=true: no earlier sweep of this command found; starting a new one",
            file=sys.stderr,
        )

    def _result(
        self, ret: JobReturn, cfg: DictConfig, overrides: list[str], sweep_dir: Path, num: int
    ) -> dict[str, Any]:
        if ret.status == JobStatus.COMPLETED and isinstance(ret._return_value, dict):
            return _with_scheduler_verdict(ret._return_value)
        # The task itself raised (or the job was lost): what is on disk, else the error.
        job_dir = sweep_dir / str(num)
        on_disk = read_result(job_dir)
        if on_disk is not None:
            return on_disk
        error = ret._return_value if ret.status == JobStatus.FAILED else "no result returned"
        return {
            **choices(cfg),
            "status": _lost_job_status(error),
            "reason": f"job error: {_first_line(error)}",
            "job_dir": str(job_dir),
            "overrides": overrides,
        }

    @staticmethod
    def _print_summary(results: list[dict[str, Any]], sweep_dir: Path) -> None:
        bad = [r for r in results if r.get("status") != "ok"]
        print(f"results: {sweep_dir / 'results.csv'}", file=sys.stderr)
        if bad:
            print(f"{len(bad)} of {len(results)} job(s) did not succeed:", file=sys.stderr)
            for r in bad:
                where = Path(str(r.get("job_dir", ""))).name
                reason = (r.get("reason") or "").splitlines()[0] if r.get("reason") else ""
                print(f"  job {where}: {r['status']}: {reason}", file=sys.stderr)
            if not interrupt.stop_requested():  # else the command to continue follows
                print("rerun with resume=true to run only these again", file=sys.stderr)


@contextlib.contextmanager
def _composing() -> Iterator[None]:
    """Every job's composed config is kept (millions of objects for a large sweep), and the
    cyclic garbage collector would scan them all again at each collection as they pile up:
    most of a 1,000-job dry run's time. Paused while composing, and the result moved out of
    later scans (gc.freeze): these objects live until the sweep ends anyway."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _preload_report_libraries() -> None:
    """The report's libraries (pandas, matplotlib) take about a second to import and are
    needed only after the last job: a thread imports them while the jobs run, at the lowest
    CPU priority (Linux: nice 19 for this thread alone) so it does not compete with them."""

    def preload() -> None:
        try:
            if sys.platform.startswith("linux"):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            import matplotlib

            matplotlib.use("Agg")
            for module in ("sweeper.collect.report", "matplotlib.pyplot"):
                importlib.import_module(module)
        except Exception:  # the report imports them itself, and reports what fails
            pass

    threading.Thread(target=preload, name="preload-report", daemon=True).start()


def _with_scheduler_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """A job whose workload died because SLURM cancelled it or hit its time limit is
    recorded as such, in the table and in its result.json."""
    state = str(result.get("scheduler_state") or "")
    verdict = _lost_job_status(state)
    if result.get("status") == "ok" or verdict == FAILED:
        return result
    result["reason"] = f"SLURM ended the job ({state}): {result.get('reason')}"
    result["status"] = verdict
    if result.get("job_dir"):
        write_json_atomic(Path(result["job_dir"]) / RESULT_FILE, result)
    return result


def _lost_job_status(error: object) -> str:
    """What the scheduler says happened to a job (a SLURM state, or an error carrying one
    from hydra_plugins' SLURM launcher); failed when it says nothing."""
    state = str(getattr(error, "state", error)).upper()
    if state.startswith("CANCELLED"):
        return CANCELLED
    if state.startswith("TIMEOUT"):
        return TIMEOUT
    return FAILED


def repeat_order(count: int, repeats: int, seed: int | str) -> list[tuple[int, int]]:
    """(repeat, job index) in the order they run: every job once per round, rounds one
    after another (A B C, then C A B, not A A B B C C). The first round runs in the sweep's
    own order (the tables list configurations in it); every later round in an order of its
    own, shuffled by a seeded generator (randomized interleaved trials: drift, the
    neighbours' noise and any effect of the job before fall on every configuration alike,
    and no configuration always follows the same one). The same seed gives the same order,
    so a resumed sweep numbers its jobs as before."""
    order: list[tuple[int, int]] = [(0, k) for k in range(count)] if repeats else []
    for r in range(1, repeats):
        indices = list(range(count))
        random.Random(f"{seed}:{r}").shuffle(indices)
        order += [(r, k) for k in indices]
    return order


def with_repeats(jobs: list[list[str]], repeats: int, seed: int | str = 0) -> list[list[str]]:
    """Every job `repeats` times, in repeat_order (as they are when repeats is 1)."""
    if repeats <= 1:
        return jobs
    return [[*jobs[k], f"repeat={r}"] for r, k in repeat_order(len(jobs), repeats, seed)]


def _launch_on_scheduler(
    launcher: Launcher, jobs: list[list[str]], first_num: int
) -> Sequence[JobReturn]:
    """A scheduler's launcher (SLURM): a refused submission is one clear message."""
    try:
        return launcher.launch(jobs, initial_job_idx=first_num)
    except Exception as exc:
        if type(exc).__name__ != "FailedJobError":  # submitit's, for a refused sbatch
            raise
        raise UserError(
            f"the scheduler refused the submission ({_first_line(exc)}): none of the "
            f"{len(jobs)} job(s) was submitted; fix it and run the command again"
        ) from None


def _print_interrupted(not_run: list[tuple[int, list[str]]], sweep_dir: Path) -> None:
    print(f"sweep stopped: {interrupt.reason()}", file=sys.stderr)
    if not_run:
        print(f"{len(not_run)} job(s) not run:", file=sys.stderr)
        for num, overrides in not_run:
            print(f"  job {num}: {' '.join(overrides)}", file=sys.stderr)
    again = [
        a for a in sys.argv[1:] if not a.startswith(("resume=", "hydra.sweep.dir=")) and a != "-m"
    ]
    command = ["python", "-m", "sweeper", "-m", *again, "resume=true"]
    print(
        f"to continue: {shlex.join([*command, f'hydra.sweep.dir={sweep_dir}'])}",
        file=sys.stderr,
    )


def _move_sweep(sweep_dir: Path, configs: list[DictConfig]) -> None:
    """Points the sweep's and its jobs' configs at sweep_dir, as `hydra.sweep.dir=` would
    (the override also reaches jobs that a scheduler composes again)."""
    for cfg in configs:
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(sweep_dir)
            cfg.hydra.overrides.hydra.append(f"hydra.sweep.dir={sweep_dir}")


def _without_run_options(overrides: list[str]) -> list[str]:
    """The overrides that say what a sweep measures (the same sweep, however it is run)."""
    return sorted(
        o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".")[0] not in RUN_OPTIONS
    )


def _jobs(where: list[str]) -> str:
    more = len(where) - 1
    return where[0] + (f" and {more} more job{'s' if more > 1 else ''}" if more else "")


def _first_line(error: object) -> str:
    """The first line of an error and of its cause (Hydra wraps OmegaConf's message)."""
    parts: list[str] = []
    while error is not None and len(parts) < 3:
        text = str(error).strip()
        if text:
            parts.append(text.splitlines()[0])
        error = getattr(error, "__cause__", None)
    return ": ".join(parts) if parts else "unknown error"
