"""What a sweep writes is readable as any file the user writes, by any JSON parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import declare_program, process_env


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_every_json_file_is_json_and_every_file_follows_the_umask(
    tmp_path: Path, standin_env: dict[str, str | None]
) -> None:
    """Two values, the first dropped: one value, no interval. result.json says null for it
    (NaN is not JSON: a parser in another language rejects the file), and the sweep's files
    get the mode the user's umask gives (0644 under umask 022), not mkstemp's 0600."""
    sweep = tmp_path / "sweep"
    argv = [
        sys.executable, "-m", "sweeper", "-m", "system=ipu_m2000", "mode=infer",
        "data=synthetic", "batch_size=1", "flags.repeat=2", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    proc = subprocess.run(
        argv,
        cwd=tmp_path,
        env=process_env({**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0"}),
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((sweep / "0" / "result.json").read_text(), parse_constant=_no_constant)
    assert result["throughput"]["n"] == 1
    assert result["throughput"]["ci95_low"] is None and result["throughput"]["ci95_high"] is None
    written = [p for p in sweep.rglob("*") if p.is_file() and ".hydra" not in p.parts]
    for path in written:
        if path.suffix == ".json":
            json.loads(path.read_text(), parse_constant=_no_constant)
    names = {p.relative_to(sweep).as_posix(): p.stat().st_mode & 0o777 for p in written}
    for name in ("results.csv", "results.json", "summary.md", "0/result.json"):
        assert names[name] == 0o644, (name, oct(names[name]))


def test_a_report_over_a_parent_of_sweeps_keeps_every_run_with_its_sweep(
    tmp_path: Path, standin_env: dict[str, str | None]
) -> None:
    """Five sweeps of the same configurations under one directory, one with repeats=3: the
    merged report has a row per configuration and sweep (repeats combined within their
    sweep, all three kept), says which sweep each row is from, and draws each sweep's runs
    as a line of its own; each figure shows its precision."""
    from sweeper.collect import report
    from tests.conftest import read_csv_rows, run_sweeper

    parent = tmp_path / "sweeps"
    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_STEP_S": "0"}
    for name in "ABCD":
        proc = run_sweeper(
            "system=ipu_m2000", "mode=infer", "data=synthetic", "batch_size=1,2",
            f"hydra.sweep.dir={parent / name}", "-m", cwd=tmp_path, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_sweeper(
        "system=ipu_m2000", "mode=infer", "data=synthetic", "batch_size=1,2", "repeats=3",
        f"hydra.sweep.dir={parent / 'E'}", "-m", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = tmp_path / "merged"
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "report", str(parent), "--out", str(merged)],
        capture_output=True, text=True, env=process_env(None), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(merged / "results.csv")
    assert sorted((Path(r["sweep"]).name, r["batch_size"], r["repeats"]) for r in rows) == [
        (name, size, "3" if name == "E" else "1") for name in "ABCDE" for size in ("1", "2")
    ]
    # Every repeat of E is in its row's figure: the mean of the three repeats' means.
    for size in ("1", "2"):
        [row] = [r for r in rows if Path(r["sweep"]).name == "E" and r["batch_size"] == size]
        means = [
            json.loads((Path(d) / "result.json").read_text())["throughput"]["mean"]
            for d in sorted((parent / "E").iterdir())
            if d.name.isdigit()
            and json.loads((Path(d) / "result.json").read_text())["batch_size"] == int(size)
        ]
        assert len(means) == 3 and float(row["throughput"]) == sum(means) / 3
        assert row["throughput_rel_ci95"] != ""
    assert "sweep" in proc.stderr and "± 95% CI" in proc.stderr
    frame = report.results_frame(report.load_results([parent]))
    labels = [t.get_text() for t in report.figure(frame).axes[0].get_legend().get_texts()]
    assert sorted(label for label in labels if "sweep" in label) == [
        f"graphcore resnet50 ipu_m2000 infer synthetic 16.16 1x sweep {name}" for name in "ABCDE"
    ]


def test_the_plot_is_drawn_once_as_matplotlib_lays_it_out(tmp_path: Path) -> None:
    """throughput.png is saved in one draw (its layout done already): the same bytes as
    matplotlib's own savefig of the figure, which draws it once more first. Plots of one
    unit and of two (two rows of axes), with latency beside, unstable points ringed, the
    device's limit, and more lines than a legend shows."""
    import io

    import matplotlib.pyplot as plt

    from sweeper.collect import report
    from sweeper.result.model import Result, Status

    def result(model: str, batch: int, unit: str, unstable: bool = False) -> Result:
        figures = {"mean": 50.0 + batch, "n": 4, "ci95_low": 48.0 + batch,
                   "ci95_high": 53.0 + batch}  # fmt: skip
        choices = {"workload": "builtin", "model": model, "system": "cpu", "mode": "infer",
                   "data": "synthetic", "batch_size": batch, "instances": 1,
                   "precision": "fp32"}  # fmt: skip
        efficiency = {"share": 0.5, "achieved_flops": 1e12, "peak_flops": 2e12,
                      "limit_throughput": 120.0}  # fmt: skip
        return Result(status=Status.OK, choices=choices, throughput=figures, unit=unit,
                      latency_ms={"mean": 2.0 * batch, "n": 4}, unstable=unstable,
                      details={"efficiency": efficiency},
                      job_dir=f"/sweeps/s/{model}{batch}")  # fmt: skip

    few = [result(m, b, "samples/s", unstable=b == 4) for m in ("a", "b") for b in (1, 2, 4, 8)]
    other_unit = [result("c", b, "tokens/s") for b in (1, 2)]
    many = [result(f"m{i}", b, "samples/s") for i in range(14) for b in (1, 16)]
    for results in (few, few + other_unit, many):
        frame = report.results_frame(results)
        assert report.plot(frame, tmp_path / "ours.png")
        fig = report.figure(frame)
        theirs = io.BytesIO()
        fig.savefig(theirs, format="png", dpi=110)
        plt.close(fig)
        assert (tmp_path / "ours.png").read_bytes() == theirs.getvalue()


def test_compare_judges_a_change_by_both_figures_noise(tmp_path: Path) -> None:
    """-5.5% beyond a 5% tolerance, but inside the two 95% intervals' combined half-width
    (±8.5%): within noise, not a regression. A -20% change with tight intervals is one; an
    unstable side is marked."""
    header = (
        "workload,model,system,mode,data,batch_size,instances,precision,status,throughput,"
        "throughput_ci95_low,throughput_ci95_high,unstable\n"
    )

    def table(name: str, rows: list[tuple[int, float, float, bool]]) -> Path:
        path = tmp_path / f"{name}.csv"
        path.write_text(
            header
            + "".join(
                f"builtin,resnet50,cpu,infer,synthetic,{b},1,fp32,ok,{m},{m - h},{m + h},{u}\n"
                for b, m, h, u in rows
            )
        )
        return path

    base = table("base", [(1, 100.0, 6.0, False), (2, 100.0, 1.0, False), (4, 100.0, 1.0, True)])
    new = table("new", [(1, 94.5, 6.0, False), (2, 80.0, 1.0, False), (4, 100.5, 1.0, False)])
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "compare", str(base), str(new),
         "--tolerance", "5"],
        capture_output=True, text=True, env=process_env(None), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1  # the regression at batch size 2
    lines = {line.split()[5]: line for line in proc.stdout.splitlines()[1:]}
    assert lines["1"].rstrip().endswith("within noise")
    assert lines["2"].rstrip().endswith("REGRESSION")
    assert lines["4"].rstrip().endswith("same (unstable base)")
    assert "failing: 1 REGRESSION" in proc.stderr


STEADY_PROGRAM = """
import sys
for i, value in enumerate([1, 100, 101, 99, 100, 98, 102]):
    print(f"step {i}: {value * int(sys.argv[1])} widgets/s")
"""


def test_a_figure_short_of_its_target_is_marked_wide_everywhere(tmp_path: Path) -> None:
    """Steady values (CV 1.4%) against a ±0.1% target: a sound figure, less precise than
    asked: `wide` (not `unstable`) in result.json, results.csv, the terminal table and the
    progress lines, summary.md, and a single run's line, with the interval's width."""
    from tests.conftest import read_csv_rows, run_sweeper

    declare_program(
        tmp_path / "conf", "steady", STEADY_PROGRAM, r"step \d+: (?P<value>[\d.]+) widgets/s",
        "widgets/s", positional=("${batch_size}",), metrics={"target_rel_ci": 0.001},
    )  # fmt: skip
    common = ["--config-dir", str(tmp_path / "conf"), "workload=steady", "history.enabled=false"]
    sweep = tmp_path / "sweep"
    proc = run_sweeper(*common, "batch_size=1,2", f"hydra.sweep.dir={sweep}", "-m", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "ok" and result["wide"] and not result["unstable"]
    assert result["reason"].startswith("wide: 95% interval ±1.")
    rows = read_csv_rows(sweep / "results.csv")
    assert [(r["unstable"], r["wide"]) for r in rows] == [("False", "True")] * 2
    assert proc.stderr.count(": ok, wide 100.00 widgets/s ±1.") == 1  # the progress line
    assert "│ ok, wide │" in proc.stderr  # the terminal table
    assert "wide: 2 result(s) with a 95% interval wider than the target, job 0 (±1." in proc.stderr
    assert "unstable" not in proc.stderr
    summary = (sweep / "summary.md").read_text()
    assert "| marks" in summary and "| wide " in summary and "**unstable**" not in summary
    assert "## Wide intervals" in summary and "did not reach the target ±0.1%" in summary

    single = run_sweeper(*common, "batch_size=1", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert "result: 100.00 widgets/s ±1." in single.stdout
    assert "; wide: 95% interval ±1." in single.stdout


def test_the_report_waits_for_the_libraries_a_thread_is_still_importing() -> None:
    """A sweep imports the report's and the history's libraries in a thread while its jobs
    run; a sweep shorter than that import must wait for it before importing them itself
    (two threads importing SQLAlchemy at once found it half-initialized: AttributeError)."""
    code = (
        "import sys, threading\n"
        "from sweeper.sweep import finish\n"
        "finish.preload_report_libraries()\n"
        "finish.preloaded()\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        # Alembic is imported only to migrate the history (sweeper.history.store).
        "wanted = {'pandas', 'matplotlib.pyplot', 'sqlalchemy.engine', 'sweeper.history.store'}\n"
        "missing = wanted - set(sys.modules)\n"
        "assert not missing, missing\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=process_env(None)
    )
    assert proc.returncode == 0, proc.stderr


def test_the_terminal_table_is_laid_out_as_rich_measures_it() -> None:
    """The table's column widths are set from its cells' text (rich measures every cell
    otherwise: a third of a long table's time), and its one-line cells printed as one row
    of lines (rich renders each cell on its own otherwise). Its output is rich's own, byte
    for byte: cells with markup-like text, an emoji code, marked statuses and empty figures,
    at a width where it fits (widths set, one row) and at narrower ones (left to rich, which
    wraps); a cell of two lines leaves each row its own."""
    import io

    from rich.console import Console

    from sweeper.collect import report
    from sweeper.result.model import Result, Status

    notes = ["[bold]x[/bold]", ":thumbs_up: ok", "plain"]

    def result(num: int, status: Status, **extra: object) -> Result:
        choices: dict[str, object] = {"workload": "builtin", "model": "resnet50", "system": "cpu",
                   "mode": "infer", "data": "synthetic", "batch_size": 2**num, "instances": 1,
                   "precision": "fp32"}  # fmt: skip
        choices["flag.note"] = notes[num % 3]
        figures = {"mean": 100.0 + num, "std": 1.5, "n": 4, "median": 100.0, "ci95_low": 98.0,
                   "ci95_high": 102.0 + num, "cv": 0.015, "rel_ci95": 0.02}  # fmt: skip
        return Result(status=status, choices=choices, throughput=figures,
                      job_dir=f"/sweeps/s/{num}", **extra)  # type: ignore[arg-type]  # fmt: skip

    def frame() -> Any:
        return report.results_frame(
            [
                result(0, Status.OK),
                result(1, Status.OK, unstable=True, reason="unstable: noisy"),
                result(2, Status.OK, wide=True),
                result(3, Status.FAILED, reason="exit code 1"),
                result(4, Status.OK),
            ]
        )

    def rendered(width: int, set_widths: bool) -> tuple[str, list[int | None], int]:
        table, _ = report.results_table(frame())
        console = Console(file=io.StringIO(), width=width, force_terminal=True)
        if set_widths and report.widths_as_measured(table, console):
            report.lines_as_one_row(table)
        console.print(table)
        widths = [column.width for column in table.columns]
        return console.file.getvalue(), widths, table.row_count  # type: ignore[attr-defined]

    wide_enough = 200
    text, widths, rows = rendered(wide_enough, set_widths=True)
    assert all(widths), widths  # it fits: every width set, so rich measured nothing
    assert rows == 1  # each column's cells one cell of lines
    assert text == rendered(wide_enough, set_widths=False)[0]
    assert "thumbs_up" not in text and "[bold]" not in text  # rendered as rich renders them
    for narrow in (60, 90):
        text, widths, rows = rendered(narrow, set_widths=True)
        assert widths == [None] * len(widths)  # too wide: rich lays it out itself
        assert rows == 5
        assert text == rendered(narrow, set_widths=False)[0]
    notes[2] = "two\nlines"  # a row of two lines: each row printed on its own
    text, widths, rows = rendered(wide_enough, set_widths=True)
    assert all(widths) and rows == 5
    assert text == rendered(wide_enough, set_widths=False)[0]
    assert "two" in text and "lines" in text
