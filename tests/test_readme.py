"""Every command in the README's bash code blocks runs here, for real where this machine can.

Each command is matched to one way of running it (RUNNERS, by pattern). A README command
that no pattern covers fails the test, so a new example needs a runner here; an example
that stops working fails CI. What cannot run here runs as close to the README as it can:
- the built-in workload with the smallest measurement (three one-step intervals, the eager
  model; the README's first command, the main job, with its default optimization),
- IPU systems on the Graphcore app stand-in (tests/stand_ins/),
- SLURM examples on the local cluster (scripts/slurm-cluster), the partition and CPU
  count mapped to it,
- the install steps and the test command are what .ci/run itself runs (checked here).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sweeper.process import memory_cgroup
from tests.conftest import (
    GRAPHCORE_APP,
    REPO,
    STAND_INS,
    read_csv_rows,
    run_sweeper,
    short_builtin,
    wait_for_driver_exit,
)

README = REPO / "README.md"
# The built-in workload at its shortest (tests/conftest.py); the README's first command, the
# main job, keeps the workload's default optimization (TorchScript for inference).
SHORT = short_builtin()
MAIN_JOB = short_builtin(optimize=None)
FULL_SIZE = short_builtin(image_size=None)  # the batch search's memory boundary is the subject


def readme_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks: continuation lines joined, comments dropped, `&&`
    chains split into their commands."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
    return commands


def sweeper_args(command: str) -> list[str]:
    """The overrides of a `python -m sweeper ...` command (any interpreter path)."""
    argv = shlex.split(command)
    return argv[argv.index("sweeper") + 1 :]


class Context:
    """What the commands share: a working directory, sweeps they made, the stand-in's env."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sweeps: list[Path] = []
        self.detached: Path | None = None
        self.standin_env: dict[str, str | None] = {
            "PATH": f"{STAND_INS}:{__import__('os').environ['PATH']}",
            "STANDIN_RUN_LOG": str(tmp / "runs.log"),
            "GRAPHCORE_CNN_APP_DIR": str(GRAPHCORE_APP),
            "DATASETS_DIR": None,
        }

    def sweep(self, args: list[str], env: dict[str, str | None] | None = None) -> Path:
        out = self.tmp / f"sweep{len(self.sweeps)}"
        proc = run_sweeper(*args, f"hydra.sweep.dir={out}", cwd=self.tmp, env=env)
        assert proc.returncode == 0, f"{args}\n{proc.stderr[-3000:]}"
        rows = read_csv_rows(out / "results.csv")
        assert rows and all(r["status"] == "ok" and float(r["throughput"]) > 0 for r in rows)
        self.sweeps.append(out)
        return out


def _ci_script() -> str:
    """.ci/run's text, quiet flags (-q) left out."""
    return (REPO / ".ci" / "run").read_text().replace(" -q ", " ")


def install_step(command: str, ctx: Context) -> None:
    """Installs: .ci/run runs the README's own install (with the test extras) on a clean
    machine; the runtime install must be that one less the dev extra."""
    ci = _ci_script()
    if command.startswith("python3 -m venv"):
        assert command in ci
        return
    assert ".venv/bin/pip install" in command
    assert command.replace("'.[torch]'", "'.[torch,dev]'") in ci, command


def pytest_command(command: str, ctx: Context) -> None:
    # This very test run is that command (.ci/run's `pytest -q`).
    ci = (REPO / ".ci" / "run").read_text()
    assert command in _ci_script() or command in ci or f"{command} -q" in ci


def builtin_sweep(command: str, ctx: Context) -> None:
    pytest.importorskip("torchvision")
    args = sweeper_args(command)
    main_job = command == readme_commands(README.read_text())[2]  # after the install steps
    out = ctx.sweep([*args, *(MAIN_JOB if main_job else SHORT)])
    expected = 1
    for arg in args:
        if "=" in arg and "," in arg:
            expected *= len(arg.split("=", 1)[1].split(","))
    rows = read_csv_rows(out / "results.csv")
    assert len(rows) == expected
    if main_job:  # the README's first sweep shows each figure's share of the measured peak
        assert all(0 < float(r["efficiency"]) < 1.5 for r in rows), rows
        used = json.loads((out / "0" / "result.json").read_text())["efficiency"]
        assert used["limit_source"].startswith("measured: 1x1 convolution probe, float32")


def single_run(command: str, ctx: Context) -> None:
    pytest.importorskip("torchvision")
    args = sweeper_args(command)
    run_dir = ctx.tmp / "single"
    proc = run_sweeper(*args, *SHORT, f"hydra.run.dir={run_dir}", cwd=ctx.tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["throughput"]["mean"] > 0
    assert "result: " in proc.stdout


def standin_sweep(command: str, ctx: Context) -> None:
    """An IPU sweep: the seed's command lines, run by Graphcore's app stand-in."""
    out = ctx.sweep(sweeper_args(command), env=ctx.standin_env)
    rows = read_csv_rows(out / "results.csv")
    assert {r["system"] for r in rows} == {"ipu_m2000"}


def dry_run(command: str, ctx: Context) -> None:
    """A dry run is the example itself: it prints the commands and runs nothing."""
    proc = run_sweeper(*sweeper_args(command), cwd=ctx.tmp, env=ctx.standin_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines and all(("train.py" in line) for line in lines)
    assert (
        not (ctx.tmp / "runs.log").exists() or "train.py" not in (ctx.tmp / "runs.log").read_text()
    )


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True)
    return proc.returncode == 0 and "up" in proc.stdout


def slurm_sweep(command: str, ctx: Context) -> None:
    """On the local cluster: its partition and CPU count stand for the README's."""
    if not _slurm_up():
        pytest.skip("no SLURM cluster (scripts/slurm-cluster start)")
    pytest.importorskip("torchvision")
    local = {"hydra.launcher.partition": "debug", "hydra.launcher.cpus_per_task": "1"}
    args = []
    for arg in sweeper_args(command):
        key = arg.split("=", 1)[0]
        args.append(f"{key}={local[key]}" if key in local else arg)
    if not any(a.startswith("hydra/launcher=slurm_local") for a in args):
        args = [a for a in args if not a.startswith("hydra/launcher=")]
        args.append("hydra/launcher=slurm_local")
    ctx.sweep([*args, *SHORT])


def slurm_cluster(command: str, ctx: Context) -> None:
    """`status` runs here; `start` and `stop` are what .ci/run runs around the tests."""
    action = command.split()[-1]
    if action == "status":
        proc = subprocess.run(
            [str(REPO / "scripts" / "slurm-cluster"), "status"], capture_output=True, text=True
        )
        assert proc.returncode in (0, 1), proc.stderr  # 1: not running, reported as such
        assert proc.stdout + proc.stderr
    else:
        assert f"scripts/slurm-cluster {action}" in _ci_script()


def collect_command(command: str, ctx: Context) -> None:
    """The collector's examples, with the placeholder paths replaced by sweeps made here."""
    if len(ctx.sweeps) < 2:
        pytest.skip("needs the README's sweeps above (torchvision)")
    a, b = ctx.sweeps[0], ctx.sweeps[-1]
    argv = shlex.split(command)[3:]
    log = next(a.rglob("stdout.log"))
    refs = ctx.tmp / "refs.yaml"
    first = read_csv_rows(b / "results.csv")[0]
    keys = ("model", "system", "mode", "data", "batch_size", "instances", "precision")
    keys += tuple(k for k in first if k.startswith("flag."))
    refs.write_text(
        "- {"
        + ", ".join(f"{k}: '{first[k]}'" for k in keys)
        + f", throughput: {first['throughput']}, lower: -0.01, upper: 0.01}}\n"
    )
    paths = {
        "path/to/log": str(log),
        "outputs/sweeps/A": str(a),
        "outputs/sweeps/B": str(b),
        "merged/": str(ctx.tmp / "merged"),
        "refs.yaml": str(refs),
    }
    argv = [paths.get(arg, arg) for arg in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", *argv], capture_output=True, text=True
    )
    if argv[0] == "compare" and "--reference" not in argv:
        assert proc.returncode in (0, 1), proc.stderr  # 1: a real difference between sweeps
        assert "Traceback" not in proc.stderr
    else:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    if argv[0] == "report":
        assert (ctx.tmp / "merged" / "results.csv").exists()


def declared_workload_sweep(command: str, ctx: Context) -> None:
    """A workload declared in the user's own config directory: the README's YAML, written
    where its first line says, and the README's command run with that directory."""
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# ~/bench-conf/"):
            path = ctx.tmp / "bench-conf" / first.removeprefix("# ~/bench-conf/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block)
    args = [a.replace("~/bench-conf", str(ctx.tmp / "bench-conf")) for a in sweeper_args(command)]
    out = ctx.sweep(args)
    rows = read_csv_rows(out / "results.csv")
    workload = args[args.index("--config-dir") + 2].split("=", 1)[1]
    declared = yaml.safe_load(
        (ctx.tmp / "bench-conf" / "workload" / f"{workload}.yaml").read_text()
    )
    sizes = next(a for a in args if a.startswith("batch_size=")).split("=", 1)[1].split(",")
    assert {r["workload"] for r in rows} == {workload}
    assert [r["batch_size"] for r in rows] == sizes
    if declared["metrics"].get("drop_first") == 0:  # one summary figure per run
        assert all(r["throughput_n"] == "1" for r in rows)
    # Its own unit, and none of the CNN groups its command does not use.
    unit = declared["metrics"]["unit"]
    assert {r["unit"] for r in rows} == {unit}
    assert all(r[g] == "" for r in rows for g in ("model", "mode", "data", "precision"))
    assert f"throughput ({unit})" in (out / "summary.md").read_text()
    # The parameters its command uses tell its runs apart: a column each.
    for name, value in declared.get("params", {}).items():
        assert {r[f"param.{name}"] for r in rows} == {str(value)}


def batch_search(command: str, ctx: Context) -> None:
    """The search on this CPU, for real: the shortest measurement and a range up to 64. The
    memory limit is a memory cgroup of each job's own where the machine allows one (as root
    here). The boundary is measured twice; where both tries agree it is exact, and where a
    batch size fitted on one try and not on the other the search says so with the evidence
    (never an ok probe above max_fit without saying so)."""
    pytest.importorskip("torchvision")
    out = ctx.tmp / "search"
    # From 16 (the ladder below it fits everywhere here: 10 jobs the boundary does not need).
    bounds = ["hydra.sweeper.min=16", "hydra.sweeper.max=64"]
    args = [*sweeper_args(command), *FULL_SIZE, *bounds, f"hydra.sweep.dir={out}"]
    proc = run_sweeper(*args, cwd=ctx.tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [cell] = json.loads((out / "search.json").read_text())
    fit, first_oom = cell["max_fit"]["batch_size"], cell["max_fit"]["first_oom"]
    assert fit is not None and first_oom == fit + 1, cell["max_fit"]
    probes: dict[int, list[tuple[str, str]]] = {p["batch_size"]: [] for p in cell["probes"]}
    for p in cell["probes"]:
        probes[p["batch_size"]].append((p["status"], p["reason"] or ""))
    # The largest that fits, measured twice, fitted both times.
    assert [status for status, _ in probes[fit]] == ["ok", "ok"], probes[fit]
    flaky = cell["max_fit"].get("flaky") or {}
    if cell["status"] == "ok":  # a repeatable boundary: ran out of memory both times
        assert not flaky
        assert [status for status, _ in probes[first_oom]] == ["oom", "oom"], probes[first_oom]
    else:
        assert cell["status"] == "flaky-boundary", cell
        assert flaky and cell["max_fit"]["largest_ok"] >= first_oom, cell["max_fit"]
        for size, statuses in flaky.items():
            assert [status for status, _ in probes[int(size)]] == statuses
    for size, tries in probes.items():  # nothing ran ok above max_fit unless it is said
        if size > fit and any(status == "ok" for status, _ in tries):
            assert str(size) in flaky, (size, tries, cell["max_fit"])
    results = [json.loads(r.read_text()) for r in out.rglob("result.json")]
    mechanisms = {r["memory_limit"]["mechanism"] for r in results}
    assert mechanisms == {memory_cgroup.CGROUP_V1} or mechanisms == {memory_cgroup.CGROUP_V2}
    assert all(
        "killed by the kernel's OOM killer in the job's memory cgroup" in reason
        for status, reason in probes[first_oom]
        if status == "oom"
    )
    assert 1 <= cell["peak"]["batch_size"] <= fit and cell["peak"]["throughput"] > 0
    assert (out / "search.png").exists()
    assert cell["memory_limit"]["mechanism"] in mechanisms
    note = f"memory limit: workload.memory_limit_gb=0.4, by {cell['memory_limit']['mechanism']}"
    assert note in (out / "search.md").read_text()


def history_command(command: str, ctx: Context) -> None:
    """The history's examples, on the history the README's sweeps above stored when they
    ended (the default database, under the directory they ran from)."""
    if not ctx.sweeps:
        pytest.skip("needs the README's sweeps above (torchvision)")
    argv = shlex.split(command)[3:]
    action = argv[1]
    if action == "ingest":
        argv = ["history", "ingest", *map(str, ctx.sweeps)]
    argv = [str(ctx.tmp / a) if a in ("trend.png", "history-site/") else a for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", *argv],
        capture_output=True,
        text=True,
        cwd=ctx.tmp,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if action == "regressions":  # 1: it found one (these sweeps ran minutes apart)
        assert proc.returncode in (0, 1), proc.stderr
        if "json" in argv:
            assert isinstance(json.loads(proc.stdout), list)
        return
    if action == "ack":  # the README's id is an example: refused, with where to find ids
        assert proc.returncode == 2 and "no finding with id '3f2a9c01b7'" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    if action == "list":
        assert "resnet50" in proc.stdout
    elif action == "trend":
        assert (ctx.tmp / "trend.png").stat().st_size > 0
    elif action == "ingest":  # the sweeps stored their runs already: nothing new
        assert " 0 new run(s)" in proc.stdout
    elif action == "site":
        assert "Benchmark history" in (ctx.tmp / "history-site" / "index.html").read_text()


def postgres_sweep(command: str, ctx: Context) -> None:
    """The sweep into a team's PostgreSQL: the test server (scripts/postgres-server) stands
    for the README's, with its password in the URL."""
    pytest.importorskip("torchvision")
    script = REPO / "scripts" / "postgres-server"
    if subprocess.run([script, "status"], capture_output=True).returncode != 0:
        pytest.skip("no PostgreSQL server (scripts/postgres-server start)")
    url = subprocess.run([script, "url"], capture_output=True, text=True).stdout.strip()
    args = [
        f"history.url={url}" if a.startswith("history.url=") else a for a in sweeper_args(command)
    ]
    out = ctx.tmp / "postgres-sweep"
    proc = run_sweeper(*args, *SHORT, f"hydra.sweep.dir={out}", cwd=ctx.tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "history: 1 run(s) stored in postgresql+psycopg://sweeper@127.0.0.1:" in proc.stderr


def installed_tool(command: str, ctx: Context) -> None:
    """The "Install as a tool" block runs in a regular install's venv, where those commands
    mean what they say: tests/test_install.py runs each of them there."""
    from tests.test_install import readme_install_commands

    assert command in readme_install_commands(), command


def detached_sweep(command: str, ctx: Context) -> None:
    """The detached sweep, to its end; `sweeper status` and `cancel` below read it."""
    pytest.importorskip("torchvision")
    out = ctx.tmp / "outputs" / "sweeps" / "detached"  # where `sweeper status` looks first
    proc = run_sweeper(*sweeper_args(command), *SHORT, f"hydra.sweep.dir={out}", cwd=ctx.tmp)
    assert proc.returncode == 0 and f"sweeper status {out}" in proc.stderr, proc.stderr
    wait_for_driver_exit(out)
    assert [r["status"] for r in read_csv_rows(out / "results.csv")] == ["ok"] * 3
    out.touch()  # the newest sweep here
    ctx.detached = out


def sweep_control(command: str, ctx: Context) -> None:
    """`sweeper status` / `sweeper cancel` of the README's detached sweep, which has ended
    (tests/test_detach.py cancels one that runs)."""
    if ctx.detached is None:
        pytest.skip("needs the README's detached sweep above (torchvision)")
    argv = [str(Path(sys.executable).parent / "sweeper"), *shlex.split(command)[1:]]
    proc = subprocess.run(argv, cwd=ctx.tmp, capture_output=True, text=True, timeout=120)
    if argv[1] == "status":  # the newest sweep: the detached one
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"sweep {ctx.detached.relative_to(ctx.tmp)}: ")
        assert "finished, succeeded (exit status 0" in proc.stdout, proc.stdout
    else:
        assert proc.returncode == 1 and "nothing to cancel" in proc.stderr, proc.stderr


# (pattern, runner), first match wins; every README command must match one.
RUNNERS: list[tuple[str, Callable[[str, Context], None]]] = [
    (r"^python3 -m venv \.venv$", install_step),
    (r"^\.venv/bin/pip install ", install_step),
    (r"^\.venv/bin/python -m pytest", pytest_command),
    (r"-m sweeper .*detach=true", detached_sweep),
    (r"^sweeper (status|cancel)", sweep_control),
    (r"^(pip install |sweeper |sweeper-collect )", installed_tool),
    (r"-m sweeper .*hydra/launcher=slurm", slurm_sweep),
    (r"-m sweeper .*dry_run=true", dry_run),
    (r"-m sweeper .*history\.url=postgresql", postgres_sweep),
    (r"-m sweeper --config-dir ~/bench-conf ", declared_workload_sweep),
    (r"-m sweeper hydra/sweeper=batch_search ", batch_search),
    (r"-m sweeper sweep=seed_\w+_(synthetic|generated) -m$", standin_sweep),
    (r"-m sweeper .*system=ipu_\w+ .* -m$", standin_sweep),
    (r"-m sweeper .* -m$", builtin_sweep),
    (r"^python -m sweeper [^-]*$", single_run),
    (r"^python -m sweeper\.collect history ", history_command),
    (r"^python -m sweeper\.collect ", collect_command),
    (r"^scripts/slurm-cluster (start|status|stop)$", slurm_cluster),
]


def runner_for(command: str) -> Callable[[str, Context], None] | None:
    for pattern, runner in RUNNERS:
        if re.search(pattern, command):
            return runner
    return None


def test_every_readme_command_has_a_runner() -> None:
    commands = readme_commands(README.read_text())
    assert len(commands) >= 10
    uncovered = [c for c in commands if runner_for(c) is None]
    assert not uncovered, f"README commands no test runs: {uncovered}"


# Commands independent of the others, each run by a test of its own (so that they run
# beside the rest, on the worker their resources need).
ON_THEIR_OWN: dict[Callable[[str, Context], None], list[pytest.MarkDecorator]] = {
    batch_search: [pytest.mark.slow],
    slurm_sweep: [pytest.mark.slow, pytest.mark.slurm],
}


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path) -> None:
    """Every command but those ON_THEIR_OWN, in the README's order (later ones read what
    earlier ones made: the collector's and the history's examples read the sweeps above)."""
    ctx = Context(tmp_path)
    skipped: list[str] = []
    for command in readme_commands(README.read_text()):
        runner = runner_for(command)
        assert runner is not None, command
        if runner in ON_THEIR_OWN:
            continue
        began = time.perf_counter()
        try:
            runner(command, ctx)
        except pytest.skip.Exception as why:
            skipped.append(f"{command}: {why}")
        print(f"{time.perf_counter() - began:6.1f} s  {command}")  # where the time goes (-s)
    if skipped:
        pytest.skip("; ".join(skipped))


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(command, marks=ON_THEIR_OWN[runner], id=runner.__name__)
        for command in readme_commands(README.read_text())
        if (runner := runner_for(command)) in ON_THEIR_OWN
    ],
)
def test_a_readme_command_on_its_own_runs(tmp_path, command: str) -> None:
    runner = runner_for(command)
    assert runner is not None
    runner(command, Context(tmp_path))
