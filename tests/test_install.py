"""A regular install works: the built wheel, installed into a fresh virtual environment
outside the checkout, runs every kind of command from another directory.

The wheel is built from this checkout (`python -m build`, without build isolation: the
test environment's setuptools) and installed by pip with `--no-deps` into a new venv in a
temporary directory. Its dependencies (hydra-core, pandas, torch, ...) come from the test
environment through a `.pth` line naming that environment's site-packages: a `.pth` file
found there is not processed, so the checkout (on sys.path in the editable install) stays
out. No PYTHONPATH; every command runs with the temporary directory as its cwd.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import sweeper
from tests.conftest import GRAPHCORE_APP, REPO, STAND_INS, declare_program, short_builtin

README = REPO / "README.md"

pytestmark = pytest.mark.slow

# What the wheel may hold at its top level: the package and Hydra's plugin namespace.
TOP_LEVEL = {"sweeper", "hydra_plugins", f"sweeper-{sweeper.__version__}.dist-info"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    (found,) = out.glob("sweeper-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; returns its bin/ directory."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return venv / "bin"


def run(bin_dir: Path, cwd: Path, *argv: str, env: dict[str, str] | None = None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPER_")}
    environment.pop("PYTHONPATH", None)
    environment.pop("GRAPHCORE_CNN_APP_DIR", None)
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment['PATH']}"
    environment.update(env or {})
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def figures(results_csv: Path) -> list[dict[str, str]]:
    """A results.csv's rows without the paths (written as given: relative or absolute)."""
    with results_csv.open() as f:
        return [
            {k: v for k, v in row.items() if k not in ("sweep", "job_dir")}
            for row in csv.DictReader(f)
        ]


def test_the_wheel_holds_only_our_namespace_and_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == TOP_LEVEL
    assert not [n for n in names if n.startswith(("tests/", "outputs/")) or "/tests/" in n]
    # The configs and the instance launchers travel inside sweeper's namespace.
    assert "sweeper/conf/config.yaml" in names
    assert "sweeper/conf/hydra/launcher/slurm_cpu.yaml" in names
    assert "sweeper/launchers/poprun.py" in names
    assert "sweeper/history/site_assets/site.js" in names


def test_the_installed_tool_runs_from_any_directory(installed: Path, tmp_path: Path) -> None:
    python = installed / "python"
    where = run(installed, tmp_path, python, "-c", "import sweeper; print(sweeper.__file__)")
    assert where.stdout.startswith(str(installed.parent)), where.stdout + where.stderr

    version = run(installed, tmp_path, installed / "sweeper", "--version")
    assert version.stdout.strip() == f"sweeper {sweeper.__version__}", version.stderr
    helped = run(installed, tmp_path, installed / "sweeper", "--help")
    assert helped.stdout.startswith("sweeper: a declarative sweep orchestrator"), helped.stdout
    assert "__main__" not in helped.stdout

    plugins = run(installed, tmp_path, python, "-m", "sweeper", "--info", "plugins")
    for name in ("BenchmarkSweeper", "BatchSearchSweeper", "LocalLauncher", "SlurmLauncher"):
        assert name in plugins.stdout, plugins.stdout + plugins.stderr

    dry = run(installed, tmp_path, installed / "sweeper", "sweep=seed_train", "dry_run=true", "-m")
    assert dry.returncode == 0, dry.stderr[-2000:]
    # The seed's eight training lines (their exact rendering: test_seed_commands.py).
    lines = dry.stdout.splitlines()
    assert len(lines) == 8 and all(" train.py --model " in line for line in lines), dry.stdout
    assert sum(line.startswith("poprun ") for line in lines) == 4, dry.stdout

    # The SLURM presets ship too (composed and checked; the SLURM tests run them for real).
    slurm = run(
        installed, tmp_path, installed / "sweeper", "hydra/launcher=slurm_cpu",
        "model=resnet50", "system=ipu_m2000", "mode=infer", "data=synthetic", "batch_size=1,4",
        "dry_run=true", "-m",
    )  # fmt: skip
    assert slurm.returncode == 0 and slurm.stdout.count("validation.py") == 2, slurm.stderr

    # A real sweep of the Graphcore stand-in (poprun's stand-in on real OpenMPI).
    sweep = tmp_path / "standin"
    proc = run(
        installed, tmp_path, installed / "sweeper", "model=resnet50", "system=ipu_m2000",
        "mode=infer", "data=synthetic", "batch_size=1,4", f"app_dir={GRAPHCORE_APP}",
        f"hydra.sweep.dir={sweep}", "-m",
        env={"PATH": f"{installed}{os.pathsep}{STAND_INS}{os.pathsep}{os.environ['PATH']}",
             "STANDIN_RUN_LOG": str(tmp_path / "runs.log")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (sweep / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",ok," in row for row in rows[1:]), rows

    report = run(installed, tmp_path, installed / "sweeper-collect", "report", sweep, "--out", "r")
    assert report.returncode == 0, report.stderr
    assert figures(tmp_path / "r" / "results.csv") == figures(sweep / "results.csv")
    # The sweep wrote its history rows (the default database: outputs/history.db here).
    history = run(installed, tmp_path, python, "-m", "sweeper.collect", "history", "list")
    assert history.returncode == 0 and "resnet50" in history.stdout, history.stderr
    site = run(installed, tmp_path, python, "-m", "sweeper.collect", "history", "site", "site")
    assert site.returncode == 0, site.stderr
    assert (tmp_path / "site" / "assets" / "site.js").is_file()


def test_a_users_workload_runs_from_an_install(installed: Path, tmp_path: Path) -> None:
    declare_program(
        tmp_path / "bench-conf", "count",
        "import sys\nfor i in range(4):\n    print(f'rate {100 + i * int(sys.argv[1])} ops/s')\n",
        r"rate (?P<value>[\d.]+) ops/s", "ops/s", positional=("${batch_size}",),
    )  # fmt: skip
    sweep = tmp_path / "mine"
    proc = run(
        installed, tmp_path, installed / "sweeper", "--config-dir", tmp_path / "bench-conf",
        "workload=count", "batch_size=1,2", "history.enabled=false",
        f"hydra.sweep.dir={sweep}", "-m",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((sweep / job / "result.json").read_text()) for job in ("0", "1")]
    # drop the first value, average the rest: 100+1..3 for bs 1, 100+2..6 for bs 2
    assert [r["throughput"]["mean"] for r in results] == [102.0, 104.0]
    assert {r["unit"] for r in results} == {"ops/s"}
    assert results[0]["versions"]["sweeper"] == sweeper.__version__


def readme_install_commands() -> list[str]:
    """The commands of the README's "Install as a tool" block (tests/test_readme.py's
    runner for them points here)."""
    section = README.read_text().split("### Install as a tool", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split(" #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readmes_install_commands_run_as_shown(installed: Path, tmp_path: Path) -> None:
    """Each command as the README shows it, in the installed venv: the install is the
    fixture's (the same wheel pip builds from '.'); the built-in sweep runs the short
    measurement of the other README tests (torch from the test environment)."""
    sweep: Path | None = None
    for command in readme_install_commands():
        argv = shlex.split(command)
        if argv[0] == "pip":
            assert argv[:2] == ["pip", "install"] and argv[2].startswith(".["), command
            continue
        if argv[0] == "sweeper" and argv[1:] == ["--version"]:
            proc = run(installed, tmp_path, installed / "sweeper", "--version")
            assert proc.stdout.strip() == f"sweeper {sweeper.__version__}", proc.stderr
        elif argv[0] == "sweeper":
            pytest.importorskip("torchvision")
            sweep = tmp_path / "outputs" / "sweeps" / "A"
            proc = run(
                installed, tmp_path, installed / "sweeper", *argv[1:], *short_builtin(),
                f"hydra.sweep.dir={sweep}", "history.enabled=false",
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert len((sweep / "results.csv").read_text().splitlines()) == 1 + 3
        else:
            assert argv[0] == "sweeper-collect" and sweep is not None, command
            out = tmp_path / "report"
            proc = run(installed, tmp_path, installed / argv[0], *argv[1:], "--out", out)
            assert proc.returncode == 0, proc.stderr
            assert figures(out / "results.csv") == figures(sweep / "results.csv")
