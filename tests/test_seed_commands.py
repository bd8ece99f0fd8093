"""Every one of the seed's 38 command lines, parsed from the seed file, against the dry run
of its composition: argv-equal up to flag order and `--flag=v` vs `--flag v`."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pytest

from tests.conftest import SEED, run_sweeper

DATASETS = "/data/imagenet-tfrecords"

# The seed's command blocks, in the seed's order, with the composition that renders each.
BLOCKS = [
    ("model=resnet50 system=ipu_m2000 mode=train", None),
    ("model=resnet50 system=ipu_pod16 mode=train", None),
    ("model=resnext101 system=ipu_m2000 mode=train", None),
    ("model=resnext101 system=ipu_pod16 mode=train", None),
    ("model=efficientnet_b4 system=ipu_m2000 mode=train", "standard"),
    ("model=efficientnet_b4 system=ipu_pod16 mode=train", "standard"),
    ("model=efficientnet_b4_g16 system=ipu_m2000 mode=train", None),
    ("model=efficientnet_b4_g16 system=ipu_pod16 mode=train", None),
    ("model=resnet50 system=ipu_m2000 mode=infer data=synthetic", None),
    ("model=resnext101 system=ipu_m2000 mode=infer data=synthetic", None),
    ("model=efficientnet_b0 system=ipu_m2000 mode=infer data=synthetic", None),
    ("model=resnet50 system=ipu_m2000 mode=infer data=generated", None),
    ("model=resnext101 system=ipu_m2000 mode=infer data=generated", None),
    ("model=efficientnet_b0 system=ipu_m2000 mode=infer data=generated", None),
]


@dataclass(frozen=True)
class Command:
    launcher: tuple[str, frozenset[tuple[str, tuple[str, ...]]]] | None
    program: str
    script: str
    flags: frozenset[tuple[str, tuple[str, ...]]]


def _flags(tokens: list[str]) -> frozenset[tuple[str, tuple[str, ...]]]:
    flags: dict[str, list[str]] = {}
    current = None
    for token in tokens:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            assert name not in flags, f"flag {name} given twice"
            flags[name] = [value] if eq else []
            current = name
        else:
            assert current is not None, f"value {token} before any flag"
            flags[current].append(token)
    return frozenset((k, tuple(v)) for k, v in flags.items())


def parse_command(line: str) -> Command:
    tokens = shlex.split(line)
    launcher = None
    if tokens[0] == "poprun":
        cut = next(i for i, t in enumerate(tokens) if t in ("python", "python3"))
        launcher = ("poprun", _flags(tokens[1:cut]))
        tokens = tokens[cut:]
    return Command(launcher, tokens[0], tokens[1], _flags(tokens[2:]))


def seed_lines() -> list[tuple[str, str]]:
    """(overrides, expected command line) for each of the seed's 38 commands."""
    text = SEED.read_text()
    blocks = re.findall(r"```\n(.*?)\n```(.*?)(?=```|\Z)", text, flags=re.S)
    assert len(blocks) == len(BLOCKS)
    cases = []
    for (command, after), (overrides, quirk) in zip(blocks, BLOCKS, strict=True):
        command = command.strip().replace("$DATASETS_DIR", DATASETS)
        if quirk == "standard":
            # The seed's "Standard (Group Dim 1)" line repeats the G16 flags; we render what
            # its heading says (see conf/recipe/efficientnet_b4_ipu_m2000_train_real.yaml).
            command = command.replace(
                "--group-dim=16 --expand-ratio=4", "--group-dim=1 --expand-ratio=6"
            )
        sweep = re.search(r"Change the --batch-size argument to be one of ([\d, ]+)", after)
        if sweep is None:
            cases.append((overrides, command))
            continue
        for size in (s.strip() for s in sweep.group(1).split(",")):
            expected = re.sub(r"--batch-size \d+", f"--batch-size {size}", command)
            cases.append((f"{overrides} batch_size={size}", expected))
    return cases


CASES = seed_lines() if SEED.exists() else []


def test_the_seed_has_38_command_lines() -> None:
    if not SEED.exists():
        pytest.skip("the seed file is not beside this checkout")
    assert len(CASES) == 38


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """Dry runs of all 14 compositions as -m sweeps, one process per seed block."""
    out: dict[str, str] = {}
    for overrides, _ in BLOCKS:
        sizes = sorted(
            {c[0].rsplit("batch_size=", 1)[1] for c in CASES if c[0].startswith(overrides + " ")},
            key=int,
        )
        args = overrides.split()
        if sizes:
            args.append("batch_size=" + ",".join(sizes))
        proc = run_sweeper(*args, "dry_run=true", "-m", env={"DATASETS_DIR": DATASETS})
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.strip().splitlines()
        for size, line in zip(sizes or [None], lines, strict=True):
            out[overrides + (f" batch_size={size}" if size else "")] = line
    return out


@pytest.mark.parametrize(("overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_dry_run_renders_the_seed_line(
    overrides: str, expected: str, rendered: dict[str, str]
) -> None:
    assert parse_command(rendered[overrides]) == parse_command(expected)


def test_unset_datasets_dir_is_shown_not_expanded() -> None:
    proc = run_sweeper(
        "model=resnet50",
        "system=ipu_m2000",
        "mode=train",
        "dry_run=true",
        env={"DATASETS_DIR": None},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--data-dir '$DATASETS_DIR/'" in proc.stdout


def test_app_python_overrides_the_seeds_interpreter() -> None:
    proc = run_sweeper(
        "model=resnet50",
        "system=ipu_m2000",
        "mode=infer",
        "data=synthetic",
        "app_python=/opt/venv/bin/python",
        "dry_run=true",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("/opt/venv/bin/python validation.py ")


def test_ipu_inference_defaults_to_synthetic_data_and_training_to_real() -> None:
    """The seed's defaults by mode, for a single run and for each job of a sweep."""
    single = run_sweeper("model=resnet50", "system=ipu_m2000", "mode=infer", "dry_run=true")
    assert single.returncode == 0, single.stderr
    assert "validation.py" in single.stdout and "--synthetic-data" in single.stdout
    sweep = run_sweeper(
        "-m", "model=resnet50", "system=ipu_m2000", "mode=infer,train", "batch_size=1",
        "dry_run=true",
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    assert "mode=infer data=synthetic" in sweep.stderr and "mode=train data=real" in sweep.stderr
    infer, train = sweep.stdout.splitlines()
    assert "--synthetic-data" in infer and "train.py" in train and "--data-dir" in train
