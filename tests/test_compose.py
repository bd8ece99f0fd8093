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
from omegaconf import OmegaConf, open_dict

import sweeper.config.schema  # noqa: F401  (registers the schema)
from sweeper.checks import declaration
from sweeper.checks.preflight import check_job
from sweeper.config import compose as compose_module
from sweeper.config import resolved as resolved_module
from sweeper.config.compose import JobComposer
from sweeper.config.recipes import CONF_DIR
from sweeper.config.resolved import ResolvedParts, references
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


def _master_of(tmp_path: Path, command_line: list[str]) -> JobComposer:
    """A composer over the master config Hydra composes for a sweep of this command line."""
    JobRuntime.instance().set("name", "sweeper")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    master = loader.load_configuration(
        "config", [*command_line, f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN
    )
    return JobComposer(HydraContext(config_loader=loader, callbacks=None), master)  # type: ignore[arg-type]


def test_jobs_of_the_masters_group_selection_start_from_the_master(tmp_path: Path) -> None:
    """A sweep whose jobs select the groups its command line selects starts them from the
    master config (not composed again): each job equals stock Hydra's, whole and without
    Hydra's node; a job that does not set every value the command line set, or selects
    other groups, is composed from its selection."""
    line = ["model=efficientnet_b0", "system=ipu_m2000", "dry_run=true", "batch_size=1,2,8"]
    composer = _master_of(tmp_path, line)
    groups = ["model=efficientnet_b0", "system=ipu_m2000"]
    # Hydra's sweep writes each job's values again (`dry_run=True`): the same value.
    from_master = [[*groups, "dry_run=True", f"batch_size={n}"] for n in (1, 2, 8)]
    others = [
        [*groups, "batch_size=2"],  # dry_run not set again: the master's true is not its
        [*groups, "dry_run=false", "batch_size=2"],
        ["model=resnet50", "system=ipu_m2000", "dry_run=true", "batch_size=2"],
        [*groups, "dry_run=true", "batch_size=2", "data=real"],
    ]
    for overrides in [*from_master, *others]:
        stock = composer.stock(overrides)
        assert OmegaConf.to_container(composer.compose(overrides)) == OmegaConf.to_container(
            stock
        ), overrides
        with open_dict(stock):
            del stock["hydra"]
        values = composer.compose_values(overrides)
        assert OmegaConf.to_container(values) == OmegaConf.to_container(stock), overrides
        assert OmegaConf.is_struct(values)
    assert sorted(from_master for _, from_master in composer.bases) == [False, False, False, True]
    assert (tuple(groups), True) in composer.bases
    assert composer._selection(tuple(groups), []) == (tuple(groups), False)


@pytest.mark.parametrize(
    "command_line",
    [
        ["model=efficientnet_b0", "+extra=1"],  # an added key: a second application fails
        ["model=efficientnet_b0", "workload={intervals: 3}"],  # a mapping is merged
        ["model=efficientnet_b0", "~recipe"],  # a deleted default
    ],
)
def test_a_master_that_is_no_jobs_composition_is_never_started_from(
    tmp_path: Path, command_line: list[str]
) -> None:
    composer = _master_of(tmp_path, command_line)
    job = [o for o in command_line if "," not in o]
    assert composer._master_lines is None
    stock = OmegaConf.to_container(composer.stock(job))
    assert OmegaConf.to_container(composer.compose(job)) == stock


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
        checked = jobs.compose_and_check(sweep, composer)
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
    checked = jobs.compose_and_check(sweep, composer)
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

    assert len(jobs.compose_and_check(sweep, composer, work)) == 30
    assert done[0] == "work" and done.count("work") == 1 and "answer" in done
    # A sweep too small to share: nothing is done meanwhile (the caller does it itself).
    done.clear()
    assert len(jobs.compose_and_check(sweep[:3], composer, work)) == 3
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
    checked = jobs.compose_and_check(sweep, composer)
    found = [job.machine_problems for job in checked]
    assert None not in found and found[3] and found[25] and not found[0] and not found[29]
    with pytest.raises(UserError) as forked:
        jobs.check_machine(checked, [])
    not_looked_for = [jobs.SweepJob(job.overrides, job.config, job.spec) for job in checked]
    with pytest.raises(UserError) as here:
        jobs.check_machine(not_looked_for, [])
    assert str(forked.value) == str(here.value)
    assert "/no/such/mpirun3" in str(here.value) and "/no/such/mpirun25" in str(here.value)


def test_a_job_is_checked_on_its_own_keys_and_composed_whole_only_when_read(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the first job starts, every job is composed without Hydra's node (its checks
    read only its own keys) and none whole: each is composed whole as it comes to run
    (SweepJob.config), with its default data (data=synthetic for Graphcore's inference),
    and equals what Hydra composes, whichever process checked it."""
    whole: list[list[str]] = []
    own_keys: list[list[str]] = []
    compose, compose_values = composer.compose, composer.compose_values

    def counted(overrides: list[str]) -> Any:
        whole.append(list(overrides))
        return compose(overrides)

    def counted_values(overrides: list[str]) -> Any:
        own_keys.append(list(overrides))
        return compose_values(overrides)

    monkeypatch.setattr(composer, "compose", counted)
    monkeypatch.setattr(composer, "compose_values", counted_values)
    sweep = [
        ["model=resnet50", "system=ipu_m2000", "mode=infer", f"batch_size={n + 1}"]
        for n in range(30)
    ]
    checked = jobs.compose_and_check(sweep, composer)
    first = 30 - int(30 * check_share.SHARE)
    # This process's share only, each twice (again with its data added); none whole.
    assert [o[3] for o in own_keys] == [f"batch_size={n // 2 + 1}" for n in range(2 * first)]
    assert whole == []
    assert [job.overrides[-1] for job in checked] == ["data=synthetic"] * 30
    for num in (1, first + 3):  # one of each process's share
        job = checked[num]
        config = job.config
        assert whole[-1] == job.overrides and job.config is config  # composed once, now
        stock = composer.stock(job.overrides)
        assert OmegaConf.to_container(config) == OmegaConf.to_container(stock)
    assert len(whole) == 2

    monkeypatch.setattr(check_share, "MIN_JOBS", 10**6)
    here = jobs.compose_and_check(sweep, composer)
    assert [job.overrides for job in here] == [job.overrides for job in checked]
    assert [job.spec.argv for job in here] == [job.spec.argv for job in checked]


def test_the_checks_read_the_same_keys_as_in_the_whole_config(composer: JobComposer) -> None:
    """compose_values is compose without Hydra's node, over the mixed sweep; a job whose own
    keys refer to Hydra's node is composed whole for its checks."""
    for parts in MIXED:
        overrides = " ".join(parts).split()
        own = OmegaConf.to_container(composer.compose_values(overrides), resolve=False)
        full = OmegaConf.to_container(composer.compose(overrides), resolve=False)
        assert isinstance(full, dict) and isinstance(own, dict) and "hydra" not in own
        assert own == {k: v for k, v in full.items() if k != "hydra"}, overrides
    # A value naming Hydra's node: the whole config, which resolves it.
    named = ["system=cpu", "extra_args=[--num,'${hydra.job.num}']"]
    assert "hydra" in composer.compose_values(named)
    assert "hydra" in composer.compose_values(["system=cpu", "hydra.job.chdir=true"])
    # A group selection whose own keys name it: no config without it.
    config = composer.compose(["system=cpu"])
    assert compose_module._without_hydra(config) is not None
    config.extra_args = ["${hydra.job.num}"]
    assert compose_module._without_hydra(config) is None


def test_unknown_keys_are_looked_for_once_per_keys_shape(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep's jobs of one group selection whose values differ have the same keys: their
    unknown keys are looked for once (JobComposer.keys_shape); a job whose overrides may
    change its keys (Hydra's `+`) is looked at itself, and its problem reported, in either
    process."""
    sweep = [["system=cpu", f"batch_size={n + 1}"] for n in range(30)]
    for n in (4, 25):
        sweep[n].append("+model.bogus=1")
    with pytest.raises(UserError) as found:
        jobs.compose_and_check(sweep, composer)
    (line,) = str(found.value).splitlines()
    assert line.startswith("error: job 4 (system=cpu batch_size=5 +model.bogus=1) and 1 more job: ")
    assert "model.bogus: no such setting" in line

    looked: list[object] = []
    unknown_keys = jobs.unknown_keys
    monkeypatch.setattr(jobs, "unknown_keys", lambda cfg: looked.append(cfg) or unknown_keys(cfg))
    monkeypatch.setattr(check_share, "MIN_JOBS", 10**6)
    with pytest.raises(UserError) as here:
        jobs.compose_and_check(sweep, composer)
    assert str(here.value) == str(found.value)
    assert len(looked) == 1 + 2  # the sweep's one shape, and each job with `+`

    shape = composer.keys_shape
    assert shape(["model=resnet50", "batch_size=3"]) == shape(["model=resnet50", "batch_size=4"])
    assert shape(["model=resnet50"]) != shape(["model=resnext101"])
    assert shape(["workload.metrics.file=null"]) != shape(["workload.metrics.file=x"])
    for changes_keys in ("extra_args=[a]", "+workload.params.x=1", "batch_size=${x}"):
        assert shape(["model=resnet50", changes_keys]) is None


def test_a_part_resolved_once_is_what_each_job_resolves(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top-level part is resolved once for the jobs of a group selection whose value
    overrides it does not depend on (sweeper.config.resolved), and each job's resolved
    config is what OmegaConf resolves for it: over the mixed sweep, a sweep of batch sizes
    (which the recipe refers to, the workload not), and one of the program the workload's
    command names through ${app_python}."""
    parts = ResolvedParts(composer)
    resolved: list[str] = []
    original = resolved_module.resolve_part

    def counted(key: str, node: Any) -> Any:
        resolved.append(key)
        return original(key, node)

    monkeypatch.setattr(resolved_module, "resolve_part", counted)

    def agree(overrides: list[str]) -> None:
        cfg = composer.compose_values(overrides)
        try:
            plain = identity.benchmark_config(cfg)
        except Exception as exc:  # a config its checks refuse (no such recipe)
            with pytest.raises(type(exc)):
                identity.benchmark_config(cfg, parts.for_job(overrides))
            return
        assert identity.benchmark_config(cfg, parts.for_job(overrides)) == plain, overrides

    for mixed in MIXED:
        agree(" ".join(mixed).split())
    graphcore = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]
    resolved.clear()
    for n in (1, 2, 4, 8):
        agree([*graphcore, f"batch_size={n}"])
    assert resolved.count("workload") == 1 and resolved.count("recipe") == 4
    assert resolved.count("model") == 1
    resolved.clear()
    for n in (1, 2):
        agree([*graphcore, "batch_size=2", f"app_python=/bin/python{n}"])
    assert resolved.count("workload") == 2 and resolved.count("model") == 0


def test_what_an_interpolation_refers_to() -> None:
    """Read with OmegaConf's grammar; unknown (None) for what may depend on more than the
    keys it names."""
    assert references("${sweeper.first_set:${app_python},${recipe.program}}") == {
        "app_python", "recipe.program"
    }  # fmt: skip
    assert references("${oc.select:model.flops_per_sample.${mode.name},null}") == {
        "model.flops_per_sample", "mode.name"
    }  # fmt: skip
    assert references("${oc.env:GRAPHCORE_CNN_APP_DIR,null}/x \\${y}") == set()
    for unknown in ("${now:%H}", "${.sibling}", "${a[0]}", "${hydra:job.num}", "${hydra.job.num}"):
        assert references(unknown) is None, unknown


def test_what_the_checks_read_once_is_what_each_job_reads(
    composer: JobComposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workload's usage and the checks of its declaration are read once for the jobs
    whose workload resolves alike (sweeper.sweep.jobs._SweepReaders), and give each job the
    spec and problems its own reading gives: a sweep of batch sizes reads them once, one of
    two programs (${app_python}) twice."""
    read: list[str] = []
    usage, check_declaration = identity.usage, declaration.check_declaration
    monkeypatch.setattr(identity, "usage", lambda cfg: read.append("usage") or usage(cfg))
    monkeypatch.setattr(
        declaration,
        "check_declaration",
        lambda cfg: read.append("declaration") or check_declaration(cfg),
    )
    monkeypatch.setattr(check_share, "MIN_JOBS", 10**6)
    graphcore = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic"]
    sweep = [[*graphcore, f"batch_size={n + 1}", f"app_python=/bin/py{n % 2}"] for n in range(8)]
    checked = jobs.compose_and_check(sweep, composer)
    assert read.count("usage") == 2 and read.count("declaration") == 2
    for job in checked:
        spec, problems = check_job(composer.compose(job.overrides), job.overrides)
        assert problems == [] and spec is not None
        assert (spec.argv, spec.choices, spec.identity) == (
            job.spec.argv, job.spec.choices, job.spec.identity
        )  # fmt: skip
    # A declaration's problem is each job's.
    broken = [
        [*graphcore, f"batch_size={n + 1}", "workload.metrics.drop_first=-1"] for n in range(3)
    ]
    with pytest.raises(UserError, match=r"job 0 .* and 2 more jobs: .*drop_first=-1"):
        jobs.compose_and_check(broken, composer)
