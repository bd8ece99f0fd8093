"""`hydra/launcher=local` passes Hydra's own launcher test suites, as Hydra's plugins do
(hydra.test_utils.launcher_common_tests, shipped in Hydra's wheel); and the CLI keeps a
Hydra user's habits: `-m` anywhere, our own error messages without Hydra's trace hint."""

from __future__ import annotations

import pytest
import yaml
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from tests.conftest import REPO, read_csv_rows, run_sweeper

TRACE_HINT = "HYDRA_FULL_ERROR"


def test_the_local_launcher_is_discovered() -> None:
    names = [cls.__name__ for cls in Plugins.instance().discover(Launcher)]
    assert "BenchmarkLocalLauncher" in names


@pytest.mark.parametrize(
    ("launcher_name", "overrides"), [("local", []), ("local", ["hydra.job.chdir=true"])]
)
class TestLocalLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"),
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": "local"},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m"],
        )
    ],
)
class TestLocalLauncherIntegration(IntegrationTestSuite):
    pass


def test_multirun_flag_anywhere_among_the_overrides(tmp_path, standin_env) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "model=resnet50",
        "system=ipu_m2000",
        "mode=infer",
        "-m",
        "data=synthetic",
        "batch_size=1,2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
        keep_flag_position=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["batch_size"] for r in read_csv_rows(sweep / "results.csv")] == ["1", "2"]


def test_our_errors_print_no_trace_hint_and_hydras_keep_it(tmp_path) -> None:
    ours = run_sweeper("-m", "batch_size=0", "dry_run=true", cwd=tmp_path)
    assert ours.returncode == 2
    assert "batch_size=0: must be a positive integer" in ours.stderr
    assert TRACE_HINT not in ours.stderr
    single = run_sweeper("batch_size=0", cwd=tmp_path)
    assert single.returncode == 2 and TRACE_HINT not in single.stderr
    hydras = run_sweeper("model=nope", cwd=tmp_path)
    assert hydras.returncode == 2
    assert TRACE_HINT in hydras.stderr
    assert REPO.exists()


def test_a_multiruns_mode_is_what_hydras_probe_would_have_read(tmp_path, standin_env) -> None:
    """With -m and our primary config, Hydra's probe of hydra.mode (a composition of its
    own) is skipped: the jobs record the mode and overrides Hydra gives after its probe. A
    hydra.mode override keeps the probe (Hydra warns that -m overrides RUN), as does
    another primary config (--config-dir, --config-name...), whose hydra.mode may be set."""
    from sweeper.__main__ import _mode_known

    assert _mode_known(["-m", "batch_size=1,2"]) and not _mode_known(["batch_size=1"])
    for kept in (["hydra.mode=RUN"], ["--config-dir", "conf"], ["--config-name=other"]):
        assert not _mode_known(["-m", *kept])
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m", "model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic",
        "batch_size=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=standin_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hydra = yaml.safe_load((sweep / "1" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["mode"] == "MULTIRUN" and hydra["overrides"]["hydra"][-1] == "hydra.mode=MULTIRUN"
    run_mode = run_sweeper(
        "-m", "hydra.mode=RUN", "model=resnet50", "system=ipu_m2000", "mode=infer",
        "data=synthetic", "batch_size=1", "dry_run=true", cwd=tmp_path, env=standin_env,
    )  # fmt: skip
    assert run_mode.returncode == 0 and "overriding with `hydra.mode=MULTIRUN`" in run_mode.stderr
