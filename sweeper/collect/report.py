"""A sweep's tables: results.csv, results.json, summary.md, plots, and a terminal table."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from sweeper.result.files import write_atomic
from sweeper.result.model import CHOICE_KEYS, EXTRA_PREFIXES, Result, marks, result_files
from sweeper.result.repeats import combine_repeats

if TYPE_CHECKING:  # imported where the table is printed: a report without one never needs rich
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

KEY_COLUMNS = list(CHOICE_KEYS)
COLUMNS = [
    *KEY_COLUMNS,
    "status",
    "throughput",
    "throughput_std",
    "throughput_n",
    "throughput_median",
    "throughput_ci95_low",
    "throughput_ci95_high",
    "throughput_cv",
    "throughput_rel_ci95",
    "unit",
    "unstable",
    "wide",
    "repeats",
    "latency_ms",
    "latency_unit",
    "efficiency",
    "achieved_tflops",
    "peak_tflops",
    "limit_throughput",
    "reason",
    "sweep",
    "job_dir",
]
GROUP_COLUMNS = ["workload", "model", "system", "mode", "data", "precision"]
TERMINAL_KEYS = [*GROUP_COLUMNS, "batch_size", "instances"]
MAX_LEGEND_ENTRIES = 12


def row_from_result(result: Result) -> dict[str, Any]:
    """One table row from a result."""
    # Figures of a run that did not succeed stay in its result.json, out of the tables.
    throughput = (result.throughput or {}) if result.ok else {}
    latency = (result.latency_ms or {}) if result.ok else {}
    used = (result.details.get("efficiency") or {}) if result.ok else {}
    row = {key: result.choices.get(key) for key in KEY_COLUMNS}
    row.update({k: v for k, v in result.choices.items() if k.startswith(EXTRA_PREFIXES)})
    row.update(
        status=result.status.value,
        throughput=throughput.get("mean"),
        throughput_std=throughput.get("std"),
        throughput_n=throughput.get("n"),
        throughput_median=throughput.get("median"),
        throughput_ci95_low=throughput.get("ci95_low"),
        throughput_ci95_high=throughput.get("ci95_high"),
        throughput_cv=throughput.get("cv"),
        # The 95% interval's half-width relative to the mean: the figure's precision.
        throughput_rel_ci95=result.rel_half_width if result.ok else None,
        unit=result.throughput_unit,
        unstable=result.unstable,
        wide=result.wide,
        repeats=result.repeats,
        latency_ms=latency.get("mean"),
        latency_unit=result.latency_unit or "ms",
        # The share of the peak, the FLOP/s behind it, and the throughput the peak allows.
        efficiency=used.get("share"),
        achieved_tflops=_tera(used.get("achieved_flops")),
        peak_tflops=_tera(used.get("peak_flops")),
        limit_throughput=used.get("limit_throughput"),
        reason=result.reason,
        sweep=str(Path(result.job_dir).parent) if result.job_dir else None,
        job_dir=result.job_dir,
    )
    return row


def flag_columns(frame: pd.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if str(c).startswith(EXTRA_PREFIXES))


def results_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per configuration (its repeats combined), with the verdict its result.json
    holds (decided in sweeper/result/verdict.py, never here)."""
    rows = [row_from_result(r) for r in combine_repeats(list(results))]
    flags = sorted({k for row in rows for k in row if k.startswith(EXTRA_PREFIXES)})
    columns = [*KEY_COLUMNS, *flags, *COLUMNS[len(KEY_COLUMNS) :]]
    frame = pd.DataFrame(rows, columns=columns)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["instances"] = frame["instances"].astype("Int64")
    frame["throughput_n"] = frame["throughput_n"].astype("Int64")
    return frame


def load_results(directories: Sequence[Path]) -> list[Result]:
    """Every result.json under the given directories — sweeps, or a parent of several —
    (earlier attempts excluded): every run of every sweep, each repeat its own. Within one
    sweep a configuration's repeat appears once (its newest result.json: job directories of
    an earlier layout may hold an older one)."""
    found: list[Result] = []
    for directory in directories:
        # (sweep, fingerprint, repeat) -> (mtime, index in found)
        newest: dict[tuple[str, str, int], tuple[float, int]] = {}
        for path in result_files(Path(directory)):
            result = Result.load(path)
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if result is None:
                continue
            result.job_dir = str(path.parent)  # where it is now (a sweep may have moved)
            # Each repeat of a configuration in each sweep is its own result.
            identity = (
                (str(path.parent.parent), result.fingerprint, result.repeat)
                if result.fingerprint
                else None
            )
            if identity is None:
                found.append(result)
            elif identity not in newest:
                newest[identity] = (mtime, len(found))
                found.append(result)
            elif mtime > newest[identity][0]:
                found[newest[identity][1]] = result
                newest[identity] = (mtime, newest[identity][1])
    return found


def markdown_summary(frame: pd.DataFrame) -> str:
    """Per model/system/mode/data: batch size against throughput and latency."""
    out = io.StringIO()
    out.write("# Sweep results\n\n")
    ok = frame[frame["status"] == "ok"]
    counts = frame["status"].value_counts().to_dict()
    out.write(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + "\n\n")
    groups = [*GROUP_COLUMNS, *flag_columns(frame), *_sweep_column(frame)]
    for keys, group in ok.groupby(groups, sort=True, dropna=False):
        out.write(f"## {' / '.join(_labels(groups, keys))}\n\n")
        table = group.sort_values(["batch_size", "instances"])[
            [
                "batch_size",
                "instances",
                "throughput",
                "throughput_rel_ci95",
                "throughput_std",
                "throughput_n",
                "repeats",
                "latency_ms",
                "efficiency",
                "unstable",
                "wide",
            ]
        ].copy()
        if table["efficiency"].isna().all():
            table = table.drop(columns="efficiency")
        else:
            table["efficiency"] = table["efficiency"].map(_share)
        table["throughput_rel_ci95"] = table["throughput_rel_ci95"].map(_percent)
        # A standard deviation of one value says nothing.
        table["throughput_std"] = table["throughput_std"].where(table["throughput_n"] > 1)
        # The figure's marks, in one column: unstable (not to be trusted) stands out.
        table["unstable"] = [
            ", ".join([*(["**unstable**"] if u else []), *(["wide"] if w else [])])
            for u, w in zip(table["unstable"], table["wide"], strict=True)
        ]
        table = table.drop(columns="wide")
        unit, latency_unit = group["unit"].iloc[0], group["latency_unit"].iloc[0]
        table = table.rename(
            columns={
                "throughput": f"throughput ({unit})",
                "throughput_rel_ci95": "± 95% CI",
                "throughput_std": "std",
                "latency_ms": f"latency ({latency_unit})",
                "efficiency": "% of peak",
                "unstable": "marks",
            }
        )
        out.write(table.to_markdown(index=False, floatfmt=".2f") + "\n\n")
    unstable = ok[ok["unstable"]]
    if len(unstable):
        out.write("## Unstable results (figures to take with care)\n\n")
        cols = [
            *_shown(unstable, KEY_COLUMNS),
            *flag_columns(frame),
            "throughput",
            "unit",
            "reason",
        ]
        out.write(unstable[cols].to_markdown(index=False, floatfmt=".2f") + "\n\n")
    wide = ok[ok["wide"] & ~ok["unstable"]]
    if len(wide):
        out.write("## Wide intervals (less precise than asked: more time or repeats)\n\n")
        cols = [*_shown(wide, KEY_COLUMNS), *flag_columns(frame), "throughput", "unit", "reason"]
        out.write(wide[cols].to_markdown(index=False, floatfmt=".2f") + "\n\n")
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        out.write("## Jobs that did not succeed\n\n")
        cols = [*_shown(failed, KEY_COLUMNS), "status", "reason"]
        out.write(failed[cols].to_markdown(index=False) + "\n")
    return out.getvalue()


def plot(frame: pd.DataFrame, path: Path) -> bool:
    """Throughput (and latency, where measured) against batch size, one line per config;
    unstable points ringed in red. False when there is nothing to plot."""
    fig = figure(frame)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    # Its layout is final (tight_layout): without the placeholder engine that leaves, savefig
    # draws it once, not once more to lay it out (a sixth of the plot's time; the same bytes).
    fig.set_layout_engine(None)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path.write_bytes(buffer.getvalue())
    return True


def figure(frame: pd.DataFrame) -> Any:
    """The plot's matplotlib figure, or None: a row of axes per throughput unit (one axis
    never mixes units), the latency beside it where measured."""
    ok = frame[(frame["status"] == "ok") & frame["throughput"].notna()]
    if ok.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(ok["unit"]))
    has_latency = ok["latency_ms"].notna().any()
    columns = 2 if has_latency else 1
    fig, grid = plt.subplots(
        len(units), columns, figsize=(6 * columns if has_latency else 7, 4.5 * len(units)),
        squeeze=False,
    )  # fmt: skip
    for row, unit in enumerate(units):
        _plot_unit(list(grid[row]), ok[ok["unit"] == unit], unit, marked=row > 0)
    fig.tight_layout()
    return fig


def _plot_unit(axes: list[Any], ok: pd.DataFrame, unit: str, marked: bool) -> None:
    """One unit's configurations: throughput (error bars: the 95% interval), latency."""
    has_latency = len(axes) > 1
    # Runs of different sweeps are never one line.
    names = [*GROUP_COLUMNS, "instances", *flag_columns(ok), *_sweep_column(ok)]
    groups = ok.groupby(names, sort=True, dropna=False)
    for keys, group in groups:
        group = group.sort_values("batch_size")
        label = " ".join(_labels(names, keys))
        low = (group["throughput"] - group["throughput_ci95_low"]).fillna(0).clip(lower=0)
        high = (group["throughput_ci95_high"] - group["throughput"]).fillna(0).clip(lower=0)
        line = axes[0].errorbar(
            group["batch_size"],
            group["throughput"],
            yerr=[low, high],
            marker="o",
            capsize=3,
            label=label,
        )
        shaky = group[group["unstable"]]
        if len(shaky):  # hollow, ringed in red: figures to take with care
            axes[0].scatter(
                shaky["batch_size"], shaky["throughput"], s=140, facecolors="white",
                edgecolors="tab:red", linewidths=1.5, zorder=3,
                label="unstable (summary.md says why)" if not marked else None,
            )  # fmt: skip
            axes[0].scatter(
                shaky["batch_size"], shaky["throughput"], s=25,
                color=line[0].get_color(), zorder=4,
            )  # fmt: skip
            marked = True
        if has_latency and group["latency_ms"].notna().any():
            axes[1].plot(group["batch_size"], group["latency_ms"], marker="o", label=label)
            # The same marks as the throughput: one run, one verdict.
            axes[1].scatter(
                shaky["batch_size"], shaky["latency_ms"], s=140, facecolors="none",
                edgecolors="tab:red", linewidths=1.5, zorder=3,
            )  # fmt: skip
    _plot_limits(axes[0], ok)
    axes[0].set(
        xlabel="batch size",
        ylabel=f"throughput ({unit})",
        title="Throughput (error bars: the 95% interval)",
    )
    if has_latency:
        latency_unit = ok["latency_unit"].iloc[0]
        axes[1].set(
            xlabel="batch size", ylabel=f"latency ({latency_unit} per batch)", title="Latency"
        )
    from matplotlib.ticker import FuncFormatter

    for ax in axes:
        ax.set_xscale("log", base=2)
        # 1 2 4 16, not 2^0 2^1 2^2 2^4
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, alpha=0.3)
    if groups.ngroups <= MAX_LEGEND_ENTRIES:
        axes[0].legend(fontsize="small")
    else:  # a legend that large would hide the plot: summary.md names every line
        axes[0].set_title(f"Throughput ({groups.ngroups} configurations; bars: 95% interval)")


def _plot_limits(ax: Any, ok: pd.DataFrame) -> None:
    """The throughput the device's limit allows (peak / work per sample), one dashed line per
    distinct value, where it is near enough the figures to be read against them (within
    4x: a datasheet peak far above them would flatten the plot; "% of peak" says it)."""
    top = ok["throughput"].max()
    limits = sorted(v for v in ok["limit_throughput"].dropna().unique() if v <= 4 * top)
    for i, limit in enumerate(limits):
        ax.axhline(
            limit, color="dimgray", linestyle="--", linewidth=1,
            label="device limit (peak / work per sample)" if i == 0 else None,
        )  # fmt: skip


def write_report(frame: pd.DataFrame, directory: Path, with_plot: bool = True) -> list[Path]:
    """Writes the sweep's tables atomically, and its plot (with_plot; else the caller
    draws it: write_plot); returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    csv_path = directory / "results.csv"
    write_atomic(csv_path, frame.to_csv(index=False))
    written.append(csv_path)
    json_path = directory / "results.json"
    write_atomic(json_path, frame.to_json(orient="records", indent=2))
    written.append(json_path)
    md_path = directory / "summary.md"
    write_atomic(md_path, markdown_summary(frame))
    written.append(md_path)
    if with_plot and (png_path := write_plot(frame, directory)) is not None:
        written.append(png_path)
    return written


def write_plot(frame: pd.DataFrame, directory: Path) -> Path | None:
    """throughput.png, written atomically; None when there is nothing to plot."""
    png_path = directory / "throughput.png"
    tmp = directory / ".throughput.png.tmp"
    if not plot(frame, tmp):
        return None
    tmp.replace(png_path)
    return png_path


def print_table(frame: pd.DataFrame) -> None:
    """The terminal's table (on stderr), then the unstable and wide results named."""
    from rich.console import Console

    table, keys = results_table(frame)
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)  # logs: one line per row, never wrapped
    if widths_as_measured(table, console):
        lines_as_one_row(table)
    console.print(table)
    unstable = frame[(frame["status"] == "ok") & frame["unstable"]]
    for _, row in unstable.iterrows():
        where = Path(str(row["job_dir"])).name
        label = " ".join(f"{c}={_cell(c, row[c])}" for c in keys if not _empty(row[c]))
        console.print(f"[yellow]unstable[/yellow] job {where} ({label}): {row['reason']}")
    wide = frame[(frame["status"] == "ok") & frame["wide"] & ~frame["unstable"]]
    if len(wide):
        jobs = ", ".join(
            f"{Path(str(row['job_dir'])).name} ({_percent(row['throughput_rel_ci95'])})"
            for _, row in wide.iterrows()
        )
        console.print(
            f"[cyan]wide[/cyan]: {len(wide)} result(s) with a 95% interval wider than the "
            f"target, job {jobs}: more time (workload.max_seconds) or repeats narrow it"
        )


def results_table(frame: pd.DataFrame) -> tuple[Table, list[str]]:
    """The results as a rich Table, and the key columns shown."""
    from rich.table import Table

    table = Table(title="Sweep results", show_lines=False)
    keys = [*_shown(frame, TERMINAL_KEYS), *flag_columns(frame), *_sweep_column(frame)]
    units = list(dict.fromkeys(frame["unit"].dropna()))
    latency_units = list(dict.fromkeys(frame["latency_unit"].dropna()))
    for col in [*keys, "status"]:
        table.add_column(col)
    # One unit: in the heading; several (workloads of their own units): a column.
    table.add_column(f"throughput {units[0]}" if len(units) == 1 else "throughput", justify="right")
    table.add_column("± 95% CI", justify="right")
    table.add_column("std", justify="right")
    if len(units) > 1:
        table.add_column("unit")
    table.add_column("n", justify="right")
    repeated = bool(len(frame)) and int(frame["repeats"].max()) > 1
    if repeated:
        table.add_column("repeats", justify="right")
    latency = latency_units[0] if len(latency_units) == 1 else "latency unit"
    table.add_column(f"latency {latency}", justify="right")
    efficient = frame["efficiency"].notna().any()
    if efficient:
        table.add_column("% of peak", justify="right")
    for row in frame.to_dict("records"):  # a Series per row (iterrows) takes 5x as long
        status, style = str(row["status"]), "green" if row["status"] == "ok" else "red"
        if status == "ok" and (row["unstable"] or row["wide"]):
            status = f"ok, {marks(bool(row['unstable']), bool(row['wide']))}"
            style = "yellow" if row["unstable"] else "cyan"
        cells = [
            *(_cell(c, row[c]) for c in keys),
            f"[{style}]{status}[/{style}]",
            _fmt(row["throughput"]),
            _percent(row["throughput_rel_ci95"]),
            _fmt(row["throughput_std"]) if _count(row["throughput_n"]) > 1 else "",
            *([str(row["unit"])] if len(units) > 1 else []),
            "" if pd.isna(row["throughput_n"]) else str(row["throughput_n"]),
            *([str(row["repeats"])] if repeated else []),
            _fmt(row["latency_ms"]),
            *([_share(row["efficiency"])] if efficient else []),
        ]
        table.add_row(*map(_text, cells))
    return table, keys


def _text(cell: str) -> Text:
    """A cell as rich renders a str cell (its markup and emoji codes read: Console.render_str
    with the console's defaults, which a table's cells take), made as the row is added: 13%
    of the time to print 200 rows, which rich spends reading each str cell as it renders."""
    from rich.text import Text

    return Text.from_markup(cell) if "[" in cell or ":" in cell else Text(cell)


def widths_as_measured(table: Table, console: Console) -> bool:
    """Rich measures every cell of a table to lay it out: a third of the time it takes to
    print 200 rows. Where the table fits the console as it is, rich gives each column the
    width of its widest cell (and its header); set here, from the cells' text alone, it is
    the same layout without that measuring. A table too wide for the console is left to
    rich's own measure (it wraps the cells then): False."""
    from rich.cells import cell_len
    from rich.text import Text

    def width(cell: object) -> int:
        text = (cell if isinstance(cell, Text) else _text(str(cell))).plain  # as rendered
        return max(cell_len(line) for line in text.split("\n"))

    # Each column's padding (one space each side), its borders (one between columns, one at
    # each edge): the table's own defaults.
    if table.padding != (0, 1, 0, 1) or not table.show_edge or table.box is None:
        return False
    widths = [max(width(c) for c in [column.header, *column.cells]) for column in table.columns]
    if sum(w + 2 for w in widths) + len(widths) + 1 > console.width:
        return False
    for column, measured in zip(table.columns, widths, strict=True):
        column.width = measured
        column.no_wrap = True  # each cell fits its line: rich need not look for where to wrap
    return True


def lines_as_one_row(table: Table) -> None:
    """Rich renders each cell on its own (padding, justifying, cropping): most of the time
    it takes to print a long table. Where every cell is one line and every column's width is
    set (widths_as_measured), a column's cells joined by newlines, as one row, print the same
    lines (each justified on its own) in a tenth of the renders. Rows with styles, or lines or
    space between them, are left as they are."""
    from rich.text import Text

    if (
        not table.row_count
        or table.show_lines
        or table.leading
        or table.row_styles
        or any(row.style or row.end_section for row in table.rows)
        or any(column.width is None or not column.no_wrap for column in table.columns)
    ):
        return
    joined = []
    for column in table.columns:
        cells = list(column.cells)  # Text each, as results_table makes them (_text)
        if not all(isinstance(cell, Text) and "\n" not in cell.plain for cell in cells):
            return  # a cell rich reads itself, or one of several lines
        joined.append(Text("\n").join(cast(list[Text], cells)))
    for column, cell in zip(table.columns, joined, strict=True):
        column._cells = [cell]  # rich's list of the column's cells
    del table.rows[1:]


def _cell(column: str, value: Any) -> str:
    if _empty(value):
        return ""
    return Path(str(value)).name if column == "sweep" else str(value)


def _count(value: Any) -> int:
    return 0 if _empty(value) else int(value)


def _empty(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _fmt(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.2f}"


def _labels(names: Sequence[str], keys: Sequence[Any]) -> list[str]:
    """A group's values for headings and legends; a group its workload does not use (empty)
    is left out; instances and the sweep say what they are."""
    shown = {"instances": "{}x", "sweep": "sweep {}"}
    return [
        f"{name}={k}"
        if name.startswith(EXTRA_PREFIXES)
        else shown.get(name, "{}").format(Path(str(k)).name if name == "sweep" else k)
        for name, k in zip(names, keys, strict=True)
        if k is not None and not (isinstance(k, float) and pd.isna(k))
    ]


def _sweep_column(frame: pd.DataFrame) -> list[str]:
    """["sweep"] when the rows come from more than one sweep."""
    return ["sweep"] if "sweep" in frame and frame["sweep"].nunique() > 1 else []


def _percent(value: Any) -> str:
    return "" if _empty(value) else f"±{value:.1%}"


def _share(value: Any) -> str:
    """An efficiency: its share of the peak (its precision is the throughput's ±)."""
    return "" if _empty(value) else f"{value:.1%}"


def _tera(flops: Any) -> float | None:
    return float(flops) / 1e12 if isinstance(flops, int | float) else None


def _shown(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns with a value in some row (a group no workload here uses is left out)."""
    return [c for c in columns if frame[c].notna().any()]
