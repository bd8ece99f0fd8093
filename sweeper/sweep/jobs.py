"""A sweep's jobs: the overrides expanded into one list per job, each composed and checked
before the first job starts (every problem reported together)."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweeper.checks import declaration
from sweeper.checks.preflight import Readers, check_environment, check_job, check_no_orphans
from sweeper.config import default_data
from sweeper.config.compose import JobComposer
from sweeper.config.keys import unknown_keys
from sweeper.config.resolved import ResolvedParts
from sweeper.errors import UserError, first_line
from sweeper.job import identity
from sweeper.job.spec import JobSpec, resolve_paths
from sweeper.sweep.check_share import Answer, Checked, CheckShare
from sweeper.where import SweepJob

T = TypeVar("T")


def expand(hydra_context: HydraContext, params: list[str]) -> list[list[str]]:
    """Cartesian product of sweep params (from config, then the command line)."""
    parser = OverridesParser.create(config_loader=hydra_context.config_loader)
    return BasicSweeper.split_arguments(parser.parse_overrides(params), None)[0]


def compose_and_check(
    jobs: list[list[str]],
    composer: JobComposer,
    meanwhile: Callable[[], None] | None = None,
) -> list[SweepJob]:
    """Composes and checks every job; all problems are reported together, before any job
    starts. A job is checked on its own keys (JobComposer.compose_values) and composed whole
    only when it is about to run (SweepJob.config), while the job before it runs. A large
    sweep's later jobs are checked by a forked process meanwhile (sweeper.sweep.check_share),
    with the same answers. `meanwhile` is done here while that process finishes (else not
    at all)."""
    launch_dir = os.getcwd()
    readers = _SweepReaders(composer)

    def composed_and_checked(num: int) -> tuple[list[str], DictConfig, Checked]:
        overrides, cfg = _composed(jobs[num], composer.compose_values, launch_dir)
        return overrides, cfg, _check(cfg, overrides, readers.for_job(overrides))

    def check_later(num: int) -> Answer | None:  # in the forked process
        try:
            overrides, cfg, checked = composed_and_checked(num)
        except (HydraException, OmegaConfBaseException):
            return None  # reported by this process, which composes the job itself then
        # What its resolvers returned there (${now:...}), for this process's copy to read.
        return checked, OmegaConf.get_cache(cfg), overrides

    # Each job's problems and job, by its number: reported in the jobs' order.
    found: dict[int, tuple[str, list[str], SweepJob | None]] = {}

    def whole_later(overrides: list[str], resolved: dict[str, Any]) -> Callable[[], DictConfig]:
        return functools.partial(_composed_later, overrides, composer.compose, launch_dir, resolved)

    def compose_and_check_here(num: int) -> None:
        try:
            overrides, cfg, checked = composed_and_checked(num)
        except (HydraException, OmegaConfBaseException) as exc:
            found[num] = (_where(jobs, num), [first_line(exc)], None)
            return
        whole = cfg if "hydra" in cfg else whole_later(overrides, OmegaConf.get_cache(cfg))
        found[num] = _checked(jobs, num, overrides, whole, checked)

    with _composing():
        share = CheckShare.start(len(jobs), check_later, meanwhile is not None)  # beside_work
        for num in range(len(jobs) if share is None else share.first):
            compose_and_check_here(num)
        if share is not None:
            if meanwhile is not None:
                meanwhile()
            for num in range(share.first, len(jobs)):
                answer = share.answer(num)
                if answer is None:
                    compose_and_check_here(num)
                    continue
                checked, resolved, overrides = answer
                whole = whole_later(overrides, resolved)
                found[num] = _checked(jobs, num, overrides, whole, checked)
    # Each problem once, with the jobs it concerns (a 1,000-job sweep of a combination
    # that does not exist is one problem, not a thousand).
    problems: dict[str, list[str]] = {}
    for num in sorted(found):
        where, job_problems, _ = found[num]
        for problem in job_problems:
            problems.setdefault(problem, []).append(where)
    if problems:
        raise UserError([f"{_jobs(where)}: {problem}" for problem, where in problems.items()])
    return [job for _, (_, _, job) in sorted(found.items()) if job is not None]


def _composed(
    overrides: list[str], compose: Callable[[list[str]], DictConfig], launch_dir: str
) -> tuple[list[str], DictConfig]:
    """A job's overrides (with its workload's default data, where that applies) and its
    composed config, relative paths taken from launch_dir."""
    cfg = compose(overrides)
    data = default_data.override_for(cfg, overrides)
    if data is not None:  # the workload's default data for this job's mode
        overrides = [*overrides, data]
        cfg = compose(overrides)
    resolve_paths(cfg, launch_dir)
    return overrides, cfg


def _composed_later(
    overrides: list[str],
    compose: Callable[[list[str]], DictConfig],
    launch_dir: str,
    resolved: dict[str, Any],
) -> DictConfig:
    """A checked job composed whole (its overrides final: its default data given), with the
    values its checks and spec were built on."""
    _, cfg = _composed(overrides, compose, launch_dir)  # its overrides final: composed once
    OmegaConf.set_cache(cfg, resolved)
    # Kept until the sweep ends, as the configs composed before the first job (_composing):
    # out of the collector's later scans (the young garbage collected first, not kept).
    gc.collect(1)
    gc.freeze()
    return cfg


class _SweepReaders:
    """What the checks read once for a sweep's jobs alike in it, by what decides it: the
    keys a config has (JobComposer.keys_shape: 0.5 ms a job), and what its workload's
    declaration resolves from (ResolvedParts.alike: the workload's usage and the checks of
    its declaration, 0.5 ms a job; each part resolved, 1.2 ms)."""

    def __init__(self, composer: JobComposer) -> None:
        self._composer = composer
        self._parts = ResolvedParts(composer)
        self._found: dict[tuple[str, object], Any] = {}

    def for_job(self, overrides: list[str]) -> Readers:
        workload = self._parts.alike("workload", overrides)
        return Readers(
            unknown_keys=self._once("keys", self._composer.keys_shape(overrides), unknown_keys),
            usage=self._once("usage", workload, identity.usage),
            declaration=self._once("declaration", workload, declaration.check_declaration),
            resolve=self._parts.for_job(overrides),
        )

    def _once(
        self, what: str, alike: object, read: Callable[[DictConfig], T]
    ) -> Callable[[DictConfig], T]:
        """read, or what it read for a job alike (None: read for each job)."""
        if alike is None:
            return read

        def once(cfg: DictConfig) -> T:
            if (what, alike) not in self._found:
                self._found[(what, alike)] = read(cfg)
            found: T = self._found[(what, alike)]
            return found

        return once


def _check(cfg: DictConfig, overrides: list[str], readers: Readers) -> Checked:
    spec, problems = check_job(cfg, overrides, readers)
    return spec, problems, machine_problems(cfg, spec)


def machine_problems(cfg: DictConfig, spec: JobSpec | None) -> list[str] | None:
    """This machine's problems with a job that will run (check_environment), looked for while
    the jobs are checked, so that a forked process looks for those of its share (reading the
    workload's requirements through OmegaConf was 2 ms a job here). Reported by check_machine,
    after the config's problems, as before. None: a dry run, or a check that failed here
    (check_machine asks again, and shows its error)."""
    if spec is None or spec.options.dry_run:
        return None
    try:
        return check_environment(cfg, spec)
    except Exception:
        return None


def _checked(
    jobs: list[list[str]],
    num: int,
    overrides: list[str],
    cfg: DictConfig | Callable[[], DictConfig],
    answer: Checked,
) -> tuple[str, list[str], SweepJob | None]:
    spec, problems, machine = answer
    job = None if spec is None else SweepJob(overrides, cfg, spec, machine)
    return _where(jobs, num), problems, job


def _where(jobs: list[list[str]], num: int) -> str:
    return f"job {num} ({' '.join(jobs[num])})" if len(jobs) > 1 else "config"


def check_machine(jobs: list[SweepJob], where_problems: list[str]) -> None:
    """This machine's checks for the jobs that will run (each problem once), and those of
    where they run (where_problems); raises UserError with all of them."""
    problems = check_no_orphans() + where_problems
    seen: set[str] = set()
    for job in jobs:
        if job.spec.options.dry_run:
            continue
        found = job.machine_problems
        if found is None:
            found = check_environment(job.config, job.spec)
        for problem in found:
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    if problems:
        raise UserError(problems)


@contextlib.contextmanager
def _composing() -> Iterator[None]:
    """Composing and checking makes millions of objects for a large sweep, whose cyclic
    garbage collection, pass after pass as they pile up, was most of a 1,000-job dry run's
    time. Paused while composing, and what is left moved out of later scans (gc.freeze).
    That includes the checks' configs (JobComposer.compose_values), garbage once checked:
    collecting them cost 0.6 ms a job before the first job starts (200 jobs, this 2-core
    VM); left, they take half the memory the whole configs kept here before took (a
    1,000-job dry run peaks at 122 MB, 178 MB before)."""
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
