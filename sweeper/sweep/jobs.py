"""A sweep's jobs: the overrides expanded into one list per job, each composed and checked
before the first job starts (every problem reported together)."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import HydraContext
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeper.checks.preflight import check_environment, check_job, check_no_orphans
from sweeper.config import default_data
from sweeper.errors import UserError, first_line
from sweeper.job.spec import resolve_paths
from sweeper.where import SweepJob


def expand(hydra_context: HydraContext, params: list[str]) -> list[list[str]]:
    """Cartesian product of sweep params (from config, then the command line)."""
    parser = OverridesParser.create(config_loader=hydra_context.config_loader)
    return BasicSweeper.split_arguments(parser.parse_overrides(params), None)[0]


def compose_and_check(
    jobs: list[list[str]], compose: Callable[[list[str]], DictConfig]
) -> list[SweepJob]:
    """Composes and checks every job; all problems are reported together, before any job
    starts."""
    checked: list[SweepJob] = []
    # Each problem once, with the jobs it concerns (a 1,000-job sweep of a combination
    # that does not exist is one problem, not a thousand).
    problems: dict[str, list[str]] = {}
    launch_dir = os.getcwd()
    with _composing():
        for num, overrides in enumerate(jobs):
            where = f"job {num} ({' '.join(overrides)})" if len(jobs) > 1 else "config"
            try:
                cfg = compose(overrides)
                data = default_data.override_for(cfg, overrides)
                if data is not None:  # the workload's default data for this job's mode
                    overrides = [*overrides, data]
                    cfg = compose(overrides)
            except (HydraException, OmegaConfBaseException) as exc:
                problems.setdefault(first_line(exc), []).append(where)
                continue
            resolve_paths(cfg, launch_dir)
            spec, found = check_job(cfg)
            for problem in found:
                problems.setdefault(problem, []).append(where)
            if spec is not None:
                checked.append(SweepJob(overrides, cfg, spec))
    if problems:
        raise UserError([f"{_jobs(where)}: {problem}" for problem, where in problems.items()])
    return checked


def check_machine(jobs: list[SweepJob], where_problems: list[str]) -> None:
    """This machine's checks for the jobs that will run (each problem once), and those of
    where they run (where_problems); raises UserError with all of them."""
    problems = check_no_orphans() + where_problems
    seen: set[str] = set()
    for job in jobs:
        if job.spec.options.dry_run:
            continue
        for problem in check_environment(job.config, job.spec):
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    if problems:
        raise UserError(problems)


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


def _jobs(where: list[str]) -> str:
    more = len(where) - 1
    return where[0] + (f" and {more} more job{'s' if more > 1 else ''}" if more else "")
