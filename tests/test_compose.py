"""Composition once per group selection gives exactly what stock Hydra composes, job by job,
over a mixed sweep (group changes and value changes)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.utils import JobRuntime, setup_globals
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

import sweeper.config.schema  # noqa: F401  (registers the schema)
from sweeper.config.compose import JobComposer
from sweeper.config.recipes import CONF_DIR
from sweeper.errors import UserError
from sweeper.job import identity
from sweeper.sweep import check_share, jobs


@pytest.fixture
def composer(tmp_path: Path) -> JobComposer:
    JobRuntime.instance().set("name", "sweeper")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    master = loader.load_configuration(
        "config", overrides=[f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN
    )
    return JobComposer(HydraContext(config_loader=loader, callbacks=None), master)  # type: ignore[arg-type]


MIXED = [
    list(job)
    for job in itertools.product(
        ["model=resnet50", "model=efficientnet_b4_g16"],
        ["system=cpu", "system=ipu_m2000"],
        ["mode=train", "mode=infer data=generated"],
        ["batch_size=1", "batch_size=16"],
        ["precision=fp32", "precision=16.32 workload.intervals=3 system.instances=2"],
    )
]


def test_every_job_equals_stock_hydra(composer: JobComposer) -> None:
    for parts in MIXED:
        overrides = " ".join(parts).split()
        fast = OmegaConf.to_container(composer.compose(overrides), resolve=False)
        stock = OmegaConf.to_container(composer.stock(overrides), resolve=False)
        assert fast == stock, overrides
    # Group selections were composed once each, not once per job.
    assert len(composer.bases) == 2 * 2 * 2  # model x system x (train | infer data=generated)


def test_lists_and_unusual_overrides(composer: JobComposer) -> None:
    for overrides in (
        ["extra_args=['$(x)',b]", "launcher=mpirun", "launcher.extra_args=[-v]"],
        ["sweep=seed_cpu", "batch_size=3"],
        ["++batch_size=5", "model=efficientnet_b0"],
        ["model=resnext101", "~recipe"],
    ):
        fast = OmegaConf.to_container(composer.compose(overrides), resolve=False)
        stock = OmegaConf.to_container(composer.stock(overrides), resolve=False)
        assert fast == stock, overrides


def test_a_bad_value_fails_as_in_hydra(composer: JobComposer) -> None:
    with pytest.raises(Exception, match="Error merging override batch_size=abc"):
        composer.compose(["batch_size=abc"])


def _sweep_with_problems(jobs: int) -> list[list[str]]:
    """Value changes, with problems early and late: a bad batch size (a check's problem)
    and a value that does not compose (Hydra's)."""
    sweep = [["system=cpu", f"batch_size={n + 1}"] for n in range(jobs)]
    sweep[2] = ["system=cpu", "batch_size=-1"]
    sweep[jobs - 3] = ["system=cpu", "batch_size=5", "system.instances=0"]
    sweep[jobs - 1] = ["system=cpu", "batch_size=abc"]
    return sweep


def _checked(composer: JobComposer, sweep: list[list[str]]) -> tuple[str, list[Any]]:
    try:
        checked = jobs.compose_and_check(sweep, composer.compose)
    except UserError as exc:
        return str(exc), []
    return "", [(job.overrides, job.spec.argv, job.spec.identity) for job in checked]


def test_a_forked_process_checking_part_of_a_sweep_answers_as_this_one(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large sweep's later jobs are checked by a forked process: the same problems, in the
    jobs' order, and the same jobs as checking them all here; and if that process dies,
    this one checks its jobs itself."""
    started: list[object] = []
    start = check_share.CheckShare.start

    def spied_start(*args: Any) -> object:
        started.append(share := start(*args))
        return share

    monkeypatch.setattr(check_share.CheckShare, "start", spied_start)
    sweep = _sweep_with_problems(40)
    forked = _checked(composer, sweep)
    assert started and started[-1] is not None and started[-1].first < 37  # type: ignore[attr-defined]
    message = forked[0]
    order = [message.find(f"job {n} (") for n in (2, 37, 39)]
    assert -1 not in order and order == sorted(order), message
    assert "system.instances=0" in message and "batch_size=abc" in message

    monkeypatch.setattr(check_share, "MIN_JOBS", 10**6)
    assert _checked(composer, sweep) == forked
    good = [["system=cpu", f"batch_size={n + 1}"] for n in range(30)]
    here = _checked(composer, good)
    assert here[0] == "" and len(here[1]) == 30

    monkeypatch.setattr(check_share, "MIN_JOBS", 2)
    assert _checked(composer, good) == here
    # The forked process dies before answering: every job is checked here, the same.
    monkeypatch.setattr(check_share, "_check_and_send", lambda *args: os._exit(3))
    assert _checked(composer, good) == here
    assert _checked(composer, sweep) == forked


def test_a_value_resolved_once_per_config_agrees_in_both_processes(
    composer: JobComposer,
) -> None:
    """A resolver whose value is kept per config (${now:...}) is resolved where a job is
    checked: the forked process's values come back with its answers, so each job's config
    here gives the fingerprint and command its checks were built on."""
    setup_globals()  # Hydra's resolvers (now), as an application has them
    stamp = "extra_args=[--stamp,'${now:%H:%M:%S.%f}']"
    sweep = [["system=cpu", f"batch_size={n + 1}", stamp] for n in range(30)]
    checked = jobs.compose_and_check(sweep, composer.compose)
    assert len(checked) == 30
    for job in checked:
        assert identity.fingerprint(job.config) == job.spec.identity
        assert identity.choices(job.config) == job.spec.choices  # one resolution gave both
        assert list(job.config.extra_args)[-1] == job.spec.argv[-1]


def test_work_given_for_meanwhile_is_done_while_the_forked_process_checks(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's own work between the checks and the first job (importing SciPy) is done
    while a forked process finishes its share: once, and before its answers are taken."""
    done: list[str] = []
    answer = check_share.CheckShare.answer

    def spied_answer(self: check_share.CheckShare, num: int) -> object:
        done.append("answer")
        return answer(self, num)

    monkeypatch.setattr(check_share.CheckShare, "answer", spied_answer)
    sweep = [["system=cpu", f"batch_size={n + 1}"] for n in range(30)]

    def work() -> None:
        done.append("work")

    assert len(jobs.compose_and_check(sweep, composer.compose, work)) == 30
    assert done[0] == "work" and done.count("work") == 1 and "answer" in done
    # A sweep too small to share: nothing is done meanwhile (the caller does it itself).
    done.clear()
    assert len(jobs.compose_and_check(sweep[:3], composer.compose, work)) == 3
    assert done == []


def test_this_machines_problems_are_found_with_the_checks_in_both_processes(
    composer: JobComposer,
) -> None:
    """What this machine lacks for a job (check_environment) is looked for while the jobs
    are checked, by the forked process for its share: check_machine reports what it would
    have found looking for them all itself."""
    sweep = [["system=cpu", f"batch_size={n + 1}"] for n in range(30)]
    for n in (3, 25):  # one in each process's share
        sweep[n] = [
            "system=cpu", "batch_size=4", "launcher=mpirun", "system.instances=2",
            f"launcher.executable=/no/such/mpirun{n}",
        ]  # fmt: skip
    checked = jobs.compose_and_check(sweep, composer.compose)
    found = [job.machine_problems for job in checked]
    assert None not in found and found[3] and found[25] and not found[0] and not found[29]
    with pytest.raises(UserError) as forked:
        jobs.check_machine(checked, [])
    not_looked_for = [jobs.SweepJob(job.overrides, job.config, job.spec) for job in checked]
    with pytest.raises(UserError) as here:
        jobs.check_machine(not_looked_for, [])
    assert str(forked.value) == str(here.value)
    assert "/no/such/mpirun3" in str(here.value) and "/no/such/mpirun25" in str(here.value)


def test_the_forked_process_s_jobs_are_composed_here_only_when_read(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs the forked process checked are not composed here before the first job starts
    (each is composed as it comes to run: SweepJob.config): then as that process composed
    it, its default data given (data=synthetic for Graphcore's inference), and as every job is
    composed where no process is forked."""
    composed: list[list[str]] = []

    def counted(overrides: list[str]) -> Any:
        composed.append(list(overrides))
        return composer.compose(overrides)

    sweep = [
        ["model=resnet50", "system=ipu_m2000", "mode=infer", f"batch_size={n + 1}"]
        for n in range(30)
    ]
    checked = jobs.compose_and_check(sweep, counted)
    first = 30 - int(30 * check_share.SHARE)
    # Only the jobs of this process's share, each twice (again with its data added).
    assert [o[3] for o in composed] == [f"batch_size={n // 2 + 1}" for n in range(2 * first)]
    assert [job.overrides[-1] for job in checked] == ["data=synthetic"] * 30
    later = checked[first + 3]
    config = later.config
    assert composed[-1] == later.overrides and later.config is config  # composed once, now

    monkeypatch.setattr(check_share, "MIN_JOBS", 10**6)
    here = jobs.compose_and_check(sweep, composer.compose)
    assert [job.overrides for job in here] == [job.overrides for job in checked]
    assert OmegaConf.to_container(config) == OmegaConf.to_container(here[first + 3].config)
    assert later.spec.argv == here[first + 3].spec.argv
