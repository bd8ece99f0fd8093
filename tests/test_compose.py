"""Composition once per group selection gives exactly what stock Hydra composes, job by job,
over a mixed sweep (group changes and value changes)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.utils import JobRuntime
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

import sweeper.config.schema  # noqa: F401  (registers the schema)
from sweeper.config.compose import JobComposer
from sweeper.config.recipes import CONF_DIR


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
