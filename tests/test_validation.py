"""Bad input is stopped before any job starts, with a message naming the problem and the
fix and no Python traceback; and commands never pass through a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import launched, read_csv_rows, run_sweeper

TRAIN = ["model=resnet50", "system=ipu_m2000", "mode=train"]
INFER_GENERATED = ["model=resnet50", "system=ipu_m2000", "mode=infer", "data=generated"]


def refused(tmp_path: Path, env: dict, *overrides: str) -> str:
    """Runs a sweep that must be refused; returns stderr after checking nothing ran."""
    proc = run_sweeper(
        "-m", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, env=env
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert launched(tmp_path / "runs.log") == []
    assert not (tmp_path / "sweep").exists()
    return proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=0", "batch_size=0: must be a positive integer"),
        ("batch_size=-1", "batch_size=-1: must be a positive integer"),
        ("batch_size=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("system.instances=0", "system.instances=0: must be a positive integer"),
        ("timeout_s=0", "timeout_s=0.0: must be a positive number of seconds"),
        ("timeout_s=-5", "timeout_s=-5.0: must be a positive number of seconds"),
        ("precision=fp8", "precision=fp8: must be one of fp32, 16.32, 16.16"),
        ("retries=-1", "retries=-1: must be 0 or more"),
        ("no_such_option=1", "no_such_option: no such setting (new keys are taken only"),
        # A near miss, with or without Hydra's `+` (which lets any new key in): refused,
        # with the setting meant; never Hydra's suggestion to add it with `+`.
        ("+batchsize=8", "batchsize: no such setting: did you mean batch_size?"),
        ("batchsize=8", "batchsize: no such setting: did you mean batch_size?"),
        (
            "+workload.max_second=3",
            "workload.max_second: no such setting: did you mean workload.max_seconds?",
        ),
        ("model.image_sze=3", "model.image_sze: no such setting: did you mean model.image_size?"),
        ("model=vgg16", "Could not find 'model/vgg16'"),
        ("data=null", "data=null: data is a config group: choose one of its options"),
        (
            "workload.optimize=magic",
            "workload.optimize=magic: must be one of auto, none, torchscript",
        ),
    ],
)
def test_bad_values_are_refused_with_the_key_named(
    tmp_path, standin_env, override, message
) -> None:
    err = refused(tmp_path, standin_env, "model=resnet50", "batch_size=1,2", override)
    assert message in err
    assert "To append to your config use +" not in err


def test_a_key_no_schema_knows_is_refused_even_from_a_users_config(tmp_path) -> None:
    """A key in a user's config file is refused before any job too (by the schema, as
    Hydra composes it); open mappings take new keys."""
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("# @package _global_\nbatchsize: 8\n")
    proc = run_sweeper(
        "--config-dir", str(tmp_path / "conf"), "sweep=mine", "dry_run=true", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "Key 'batchsize' not in 'BenchmarkConfig'" in proc.stderr
    ok = run_sweeper("+flags.foo=1", "+workload.params.x=1", "dry_run=true", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_every_bad_job_is_reported_at_once(tmp_path, standin_env) -> None:
    err = refused(tmp_path, standin_env, "batch_size=0,4,-2")
    assert "job 0 (batch_size=0)" in err and "job 2 (batch_size=-2)" in err
    assert "job 1" not in err


def test_a_combination_the_seed_does_not_define_lists_those_it_does(tmp_path, standin_env) -> None:
    err = refused(tmp_path, standin_env, "model=efficientnet_b0", "system=ipu_m2000", "mode=train")
    assert "the seed defines no benchmark for model=efficientnet_b0 system=ipu_m2000" in err
    assert "model=resnet50 system=ipu_pod16 mode=train data=real" in err


def test_a_problem_shared_by_many_jobs_is_reported_once(tmp_path, standin_env) -> None:
    err = refused(
        tmp_path, standin_env, "model=efficientnet_b0", "system=ipu_m2000", "mode=train",
        "batch_size=1,2,4,8",
    )  # fmt: skip
    assert err.count("the seed defines no benchmark for") == 1
    assert "job 0 (" in err and "and 3 more jobs: the seed defines no benchmark" in err


def test_single_launcher_cannot_run_two_instances(tmp_path, standin_env) -> None:
    err = refused(tmp_path, standin_env, "launcher=single", "system.instances=2")
    assert "launcher=single runs at most 1 instance(s)" in err


def test_datasets_dir_unset_for_the_seeds_training(tmp_path, standin_env) -> None:
    err = refused(tmp_path, standin_env, *TRAIN)
    assert "DATASETS_DIR is not set" in err and "export DATASETS_DIR=" in err


def test_datasets_dir_missing(tmp_path, standin_env) -> None:
    env = {**standin_env, "DATASETS_DIR": str(tmp_path / "nowhere")}
    assert "does not exist" in refused(tmp_path, env, *TRAIN)


def test_datasets_dir_unset_for_real_data_on_cpu(tmp_path, standin_env) -> None:
    pytest.importorskip("torch")
    err = refused(tmp_path, standin_env, "data=real")
    assert "DATASETS_DIR is not set: data=real needs it" in err


def test_app_dir_unset(tmp_path, standin_env) -> None:
    env = {**standin_env, "GRAPHCORE_CNN_APP_DIR": None}
    err = refused(tmp_path, env, *INFER_GENERATED[:3], "data=synthetic")
    assert "app_dir is not set" in err and "GRAPHCORE_CNN_APP_DIR" in err


def test_app_dir_without_the_scripts(tmp_path, standin_env) -> None:
    err = refused(
        tmp_path, standin_env, *INFER_GENERATED[:3], "data=synthetic", f"app_dir={tmp_path}"
    )
    assert f"requires.files[0]: {tmp_path}/validation.py does not exist" in err
    assert "point app_dir at Graphcore's TensorFlow CNN app" in err


def test_poprun_not_found(tmp_path, standin_env) -> None:
    env = {**standin_env, "PATH": "/usr/bin:/bin"}
    err = refused(tmp_path, env, *INFER_GENERATED)
    assert "'poprun' not found on PATH" in err


def test_torchrun_not_found(tmp_path, standin_env) -> None:
    pytest.importorskip("torch")
    err = refused(
        tmp_path, standin_env, "system.instances=2", "launcher.executable=no-such-torchrun"
    )
    assert "'no-such-torchrun' not found on PATH" in err


def test_mpirun_not_found(tmp_path, standin_env) -> None:
    pytest.importorskip("torch")
    err = refused(
        tmp_path,
        standin_env,
        "launcher=mpirun",
        "system.instances=2",
        "launcher.executable=no-such-mpirun",
    )
    assert "'no-such-mpirun' not found on PATH" in err


def test_no_cuda_for_system_gpu(tmp_path, standin_env) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = refused(tmp_path, standin_env, "system=gpu")
    assert "system=gpu but CUDA is not available here" in err


def test_a_dry_run_needs_none_of_the_external_parts(tmp_path, standin_env) -> None:
    env = {**standin_env, "PATH": "/usr/bin:/bin", "GRAPHCORE_CNN_APP_DIR": None}
    proc = run_sweeper(
        "-m", *TRAIN, "system=ipu_m2000,ipu_pod16", "dry_run=true", cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    assert launched(tmp_path / "runs.log") == []


def test_shell_metacharacters_arrive_as_literal_arguments(tmp_path, standin_env) -> None:
    marker = tmp_path / "pwned"
    values = [f"$(touch {marker})", f"`touch {marker}`", f"a; touch {marker}", "b && c | d > e"]
    extra = "extra_args=[" + ",".join(f"'{v}'" for v in values) + "]"
    proc = run_sweeper(
        "-m",
        "model=resnet50",
        "system=ipu_m2000",
        "mode=infer",
        "data=synthetic",
        "batch_size=1",
        extra,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = launched(tmp_path / "runs.log")
    assert run["argv"][-len(values) :] == values
    assert not marker.exists()
    assert not (tmp_path / "e").exists()


def test_cli_help_lists_the_groups() -> None:
    proc = run_sweeper("--help")
    assert proc.returncode == 0
    for group in ("model:", "system:", "mode:", "data:", "launcher:", "sweep:"):
        assert group in proc.stdout
    assert "efficientnet_b4_g16" in proc.stdout and "ipu_pod16" in proc.stdout


def test_cfg_job_prints_the_composed_config() -> None:
    proc = run_sweeper("model=resnext101", "mode=train", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "name: resnext101" in proc.stdout and "batch_size: 4" in proc.stdout


def test_ipu_results_carry_the_precision_their_command_uses(tmp_path, standin_env) -> None:
    """The seed's recipes fix --precision (or leave the app's default, 16.16): that is the
    label; precision= sets the app's --precision and the label together."""
    sweep = tmp_path / "sweep"
    proc = run_sweeper(
        "-m",
        "model=resnet50,efficientnet_b0",
        "system=ipu_m2000",
        "mode=infer",
        "data=synthetic",
        "batch_size=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=standin_env,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("resnet50", "16.16"),  # no --precision in the seed's line: the app's default
        ("efficientnet_b0", "16.16"),  # the seed's --precision 16.16
    ]
    dry = run_sweeper(
        "-m",
        "model=efficientnet_b0",
        "system=ipu_m2000",
        "mode=infer",
        "data=synthetic",
        "precision=16.16,16.32",
        "dry_run=true",
        cwd=tmp_path,
        env=standin_env,
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.strip().splitlines()
    assert "--precision 16.16" in lines[0] and "--precision 16.32" in lines[1]
    refused = run_sweeper(
        "model=resnet50",
        "system=ipu_m2000",
        "mode=infer",
        "data=synthetic",
        "precision=fp32",
        cwd=tmp_path,
        env=standin_env,
    )
    assert refused.returncode == 2
    assert "precision=fp32: workload 'graphcore' computes in 16.32 or 16.16" in refused.stderr
