"""The sweep: expand overrides into jobs, check every job before the first starts, launch
them through Hydra's configured launcher, then write the sweep's report.

Hydra knows it as `hydra/sweeper=benchmark` (hydra_plugins/sweeper_benchmark/, the default
in conf/config.yaml). Unlike
Hydra's basic sweeper it never stops at a failed job, always writes the report, resumes a
sweep, and reports an exit status for the whole sweep.
"""

from __future__ import annotations

import os
import shlex
import sys
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

from sweeper.collect.evaluate import CANCELLED, FAILED, TIMEOUT
from sweeper.collect.report import print_table, results_frame, write_report
from sweeper.compose import JobComposer
from sweeper.errors import UserError
from sweeper.job import JobSpec
from sweeper.progress import SWEEP_SIZE_ENV
from sweeper.results import RESULT_FILE, choices, read_result, write_json_atomic
from sweeper.validation import check_environment, check_job


@dataclass
class SweepOutcome:
    sweep_dir: Path
    statuses: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return all(status in ("ok", "dry-run") for status in self.statuses)


# The last sweep of this process, for the exit status (see sweeper/__main__.py).
last_outcome: SweepOutcome | None = None


class BenchmarkSweep(Sweeper):
    def __init__(self, params: dict[str, str] | None = None) -> None:
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.composer: JobComposer | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
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
        global last_outcome
        assert self.config is not None and self.launcher is not None
        jobs = self.job_overrides(arguments)
        checked = self._compose_and_check(jobs)
        configs = [cfg for cfg, _ in checked]

        dry = [spec for cfg, spec in checked if cfg.dry_run]
        for spec in dry:
            print(shlex.join(spec.argv), flush=True)
        if len(dry) == len(configs):
            last_outcome = SweepOutcome(Path("."), ["dry-run"] * len(configs))
            return []

        self._preflight(checked)
        if any(cfg.resume for cfg in configs):
            self._use_earlier_sweep_dir(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        os.environ[SWEEP_SIZE_ENV] = str(len(jobs))
        try:
            returns = self.launcher.launch(jobs, initial_job_idx=0)
        finally:
            os.environ.pop(SWEEP_SIZE_ENV, None)
        results = [
            self._result(ret, cfg, overrides, sweep_dir, num)
            for num, (ret, cfg, overrides) in enumerate(zip(returns, configs, jobs, strict=True))
        ]
        frame = results_frame(results)
        write_report(frame, sweep_dir)
        print_table(frame)
        outcome = SweepOutcome(sweep_dir, [r["status"] for r in results])
        self._print_summary(results, sweep_dir)
        last_outcome = outcome
        return [returns]

    def _compose_and_check(self, jobs: list[list[str]]) -> list[tuple[DictConfig, JobSpec]]:
        """Composes and checks every job; all problems are reported together, before any
        job starts."""
        checked: list[tuple[DictConfig, JobSpec]] = []
        problems: list[str] = []
        for num, overrides in enumerate(jobs):
            where = f"job {num} ({' '.join(overrides)})" if len(jobs) > 1 else "config"
            try:
                cfg = self.compose(overrides)
            except (HydraException, OmegaConfBaseException) as exc:
                problems.append(f"{where}: {_first_line(exc)}")
                continue
            spec, found = check_job(cfg)
            problems += [f"{where}: {p}" for p in found]
            if spec is not None:
                checked.append((cfg, spec))
        if problems:
            raise UserError(problems)
        return checked

    def _preflight(self, checked: list[tuple[DictConfig, JobSpec]]) -> None:
        problems: list[str] = []
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

    def _use_earlier_sweep_dir(self, arguments: list[str]) -> None:
        """resume=true without hydra.sweep.dir: continue the newest sweep that ran the same
        command (same overrides but for resume)."""
        assert self.config is not None
        hydra_overrides = list(self.config.hydra.overrides.hydra)
        if any(o.startswith("hydra.sweep.dir=") for o in hydra_overrides):
            return
        wanted = _without_resume(list(self.config.hydra.overrides.task))
        root = Path(str(self.config.hydra.sweep.dir)).parent
        candidates = sorted(root.glob("*/multirun.yaml"), key=lambda p: p.stat().st_mtime)
        for path in reversed(candidates):
            earlier = OmegaConf.load(path)
            task = list(OmegaConf.select(earlier, "hydra.overrides.task", default=[]) or [])
            if _without_resume(task) == wanted:
                found = str(path.parent)
                with open_dict(self.config):
                    self.config.hydra.sweep.dir = found
                    self.config.hydra.overrides.hydra.append(f"hydra.sweep.dir={found}")
                print(f"resuming the sweep in {found}", file=sys.stderr)
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
            print("rerun with resume=true to run only these again", file=sys.stderr)


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


def _without_resume(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.lstrip("+~").startswith("resume="))


def _first_line(error: object) -> str:
    """The first line of an error and of its cause (Hydra wraps OmegaConf's message)."""
    parts: list[str] = []
    while error is not None and len(parts) < 3:
        text = str(error).strip()
        if text:
            parts.append(text.splitlines()[0])
        error = getattr(error, "__cause__", None)
    return ": ".join(parts) if parts else "unknown error"
