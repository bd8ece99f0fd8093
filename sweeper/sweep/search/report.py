"""The search's outputs: search.json (one entry per cell), search.md, search.png and a
table of the answers in the terminal."""

from __future__ import annotations

import io
import json
import math
import textwrap
from pathlib import Path
from typing import Any

from sweeper.result.files import write_atomic
from sweeper.result.model import DEFAULT_UNIT
from sweeper.sweep.search.strategy import FLAKY_BOUNDARY, OK, OOM, CellSearch

ANSWERS = ("peak", "knee", "max_fit", "latency")


def entry(cell: dict[str, Any], search: CellSearch) -> dict[str, Any]:
    """One cell's search.json entry."""
    return {
        **cell,
        **search.answers(),
        "jobs": len(search.probes),
        "rounds": search.rounds,
        "status": search.status,
        "reason": search.reason,
        "probes": [p.to_dict() for p in sorted(search.probes, key=lambda p: p.batch_size)],
    }


def label(entry: dict[str, Any]) -> str:
    keys = ("workload", "model", "system", "mode", "data", "precision", "instances")
    extra = [k for k in entry if k.startswith("flag.")]
    return " ".join(f"{k}={entry[k]}" for k in (*keys, *extra) if k in entry)


def write(entries: list[dict[str, Any]], directory: Path) -> None:
    write_atomic(directory / "search.json", json.dumps(entries, indent=2, allow_nan=False) + "\n")
    write_atomic(directory / "search.md", markdown(entries))
    png = plot(entries)
    if png is not None:
        tmp = directory / ".search.png.tmp"
        tmp.write_bytes(png)
        tmp.replace(directory / "search.png")


def _peak(e: dict[str, Any]) -> str:
    peak = e.get("peak")
    if not peak:
        return ""
    low, high = peak.get("ci95_low"), peak.get("ci95_high")
    interval = f" ({low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    return f"{peak['batch_size']}: {peak['throughput']:.2f}{interval}"


def _knee(e: dict[str, Any]) -> str:
    knee = e.get("knee")
    return f"{knee['batch_size']}: {knee['throughput']:.2f}" if knee else ""


def _max_fit(e: dict[str, Any]) -> str:
    fit = e.get("max_fit")
    if not fit:
        return ""
    if fit.get("first_oom") is None:
        return f"fits max ({fit.get('note', '')})"
    size = fit["batch_size"]
    text = f"{size if size is not None else 'none'} (oom at {fit['first_oom']}"
    flaky = fit.get("flaky")
    if flaky:
        tries = "; ".join(f"{b}: {', '.join(statuses)}" for b, statuses in flaky.items())
        text += f"; not repeatable: {tries}"
    return text + ")"


def _latency(e: dict[str, Any]) -> str:
    lat = e.get("latency")
    if not lat:
        return ""
    return f"{lat['batch_size']}: {lat['latency_ms']:.1f} ms <= {lat['bound_ms']:g}"


COLUMNS = (
    ("peak (batch: throughput, 95% CI)", _peak),
    ("knee", _knee),
    ("max fit", _max_fit),
    ("latency bound", _latency),
)


def memory_note(entries: list[dict[str, Any]]) -> str | None:
    """How the memory limit was enforced, where one was given."""
    limit = next((e["memory_limit"] for e in entries if e.get("memory_limit")), None)
    if limit is None:
        return None
    return f"memory limit: workload.memory_limit_gb={limit['gb']:g}, by {limit['mechanism']}"


def markdown(entries: list[dict[str, Any]]) -> str:
    lines = ["# Batch-size search", ""]
    note = memory_note(entries)
    if note:
        lines += [note, ""]
    header = ["cell", "status", *(name for name, _ in COLUMNS), "jobs", "rounds"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        cells = [label(e), e["status"], *(f(e) for _, f in COLUMNS), e["jobs"], e["rounds"]]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    for e in entries:
        lines += ["", f"## {label(e)}", ""]
        if e.get("reason"):
            lines += [f"{e['status']}: {e['reason']}", ""]
        lines += [
            "| batch_size | status | throughput | 95% CI | latency ms |",
            "|---|---|---|---|---|",
        ]
        for p in e["probes"]:
            figure = f"{p['throughput']:.2f}" if p["throughput"] is not None else ""
            interval = (
                f"{p['ci95_low']:.2f}-{p['ci95_high']:.2f}"
                if p["ci95_low"] is not None and p["ci95_high"] is not None
                else ""
            )
            latency = f"{p['latency_ms']:.2f}" if p["latency_ms"] is not None else ""
            lines.append(
                f"| {p['batch_size']} | {_md(p['status'])} | {figure} | {interval} | {latency} |"
            )
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def print_answers(entries: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Batch-size search", caption=memory_note(entries))
    for name in ("cell", "status", *(n for n, _ in COLUMNS), "jobs", "rounds"):
        table.add_column(name)
    for e in entries:
        style = {"ok": "green", FLAKY_BOUNDARY: "yellow"}.get(e["status"], "red")
        table.add_row(
            label(e),
            f"[{style}]{e['status']}[/{style}]",
            *(f(e) for _, f in COLUMNS),
            str(e["jobs"]),
            str(e["rounds"]),
        )
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=160)
    console.print(table)


def plot(entries: list[dict[str, Any]]) -> bytes | None:
    """Throughput (and latency) against batch size per cell: every probe marked, the answers
    annotated, the out-of-memory region shaded."""
    if not any(e["probes"] for e in entries):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(entries), 1, figsize=(9, 4 * len(entries)), squeeze=False)
    for ax, e in zip(axes[:, 0], entries, strict=True):
        _plot_cell(ax, e)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _plot_cell(ax: Any, e: dict[str, Any]) -> None:
    from matplotlib.ticker import FuncFormatter

    probes = e["probes"]
    ok = [p for p in probes if p["status"] == OK and p["throughput"] is not None]
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 16, not 2^4
    ax.set(xlabel="batch size", ylabel=f"throughput ({e.get('unit') or DEFAULT_UNIT})")
    ax.set_title(textwrap.fill(label(e), 90), fontsize="small")
    ax.grid(True, alpha=0.3)
    if ok:
        xs = [p["batch_size"] for p in ok]
        ys = [p["throughput"] for p in ok]
        errors = [
            [
                y - (p["ci95_low"] if p["ci95_low"] is not None else y)
                for p, y in zip(ok, ys, strict=True)
            ],
            [
                (p["ci95_high"] if p["ci95_high"] is not None else y) - y
                for p, y in zip(ok, ys, strict=True)
            ],
        ]
        order = sorted(range(len(xs)), key=xs.__getitem__)
        ax.plot([xs[i] for i in order], [ys[i] for i in order], color="tab:blue", alpha=0.4)
        ax.errorbar(xs, ys, yerr=errors, fmt="o", color="tab:blue", capsize=3, label="probe")
    _plot_out_of_memory(ax, e, ok)
    failed = [p["batch_size"] for p in probes if p["status"] not in (OK, OOM)]
    if failed:
        ax.scatter(failed, [0] * len(failed), marker="x", color="grey", label="failed")
    peak, knee, fit = e.get("peak"), e.get("knee"), e.get("max_fit")
    if peak:
        ax.plot(peak["batch_size"], peak["throughput"], "*", color="gold", markersize=16,
                markeredgecolor="black", label=f"peak {peak['batch_size']}")  # fmt: skip
    if knee:
        ax.plot(knee["batch_size"], knee["throughput"], "v", color="tab:green", markersize=11,
                label=f"knee {knee['batch_size']}")  # fmt: skip
    if fit and fit.get("batch_size"):
        ax.axvline(fit["batch_size"], color="tab:red", linestyle="--",
                   label=f"max fit {fit['batch_size']}")  # fmt: skip
    limits = {p.get("limit_throughput") for p in ok} - {None}
    top = max((p["throughput"] for p in ok), default=0.0)
    # The plateau's ceiling: the device's peak over the work per sample (where it is near
    # enough the figures to be read against them).
    if len(limits) == 1 and next(iter(limits)) <= 4 * top:
        (limit,) = limits
        ax.axhline(limit, color="black", linestyle=":", linewidth=1,
                   label=f"device limit {limit:.4g} (peak / work per sample)")  # fmt: skip
    _plot_latency(ax, e, ok)
    ax.legend(fontsize="small", loc="upper left")
    if not math.isfinite(ax.get_ylim()[1]):
        ax.set_ylim(0, 1)


def _plot_out_of_memory(ax: Any, e: dict[str, Any], ok: list[dict[str, Any]]) -> None:
    """Sizes that ran out of memory: crosses, and the region above the largest that fitted."""
    probes = e["probes"]
    sizes = [p["batch_size"] for p in probes]
    oom = [p["batch_size"] for p in probes if p["status"] == OOM]
    if oom:
        ax.scatter(oom, [0] * len(oom), marker="x", color="tab:red", label="out of memory")
        # Shaded red only where nothing ran ok; where sizes both fitted and ran out of
        # memory, a band of its own.
        ran_ok = [p["batch_size"] for p in ok]
        always_oom = [b for b in oom if b > max(ran_ok, default=0)]
        if always_oom:
            ax.axvspan(min(always_oom), max(sizes) * 1.2, color="tab:red", alpha=0.08)
        flaky = sorted(int(b) for b in ((e.get("max_fit") or {}).get("flaky") or {}))
        if flaky:
            band = "not repeatable: " + ", ".join(map(str, flaky))
            ax.axvspan(min(flaky) * 0.95, max(flaky) * 1.05, color="tab:orange", alpha=0.15,
                       hatch="//", label=band)  # fmt: skip


def _plot_latency(ax: Any, e: dict[str, Any], ok: list[dict[str, Any]]) -> None:
    """Latency per batch on a second axis, and the latency bound's answer."""
    with_latency = [p for p in ok if p["latency_ms"] is not None]
    if with_latency:
        twin = ax.twinx()
        pts = sorted((p["batch_size"], p["latency_ms"]) for p in with_latency)
        twin.plot(*zip(*pts, strict=True), "s--", color="tab:orange", alpha=0.7, markersize=4)
        twin.set_ylabel(f"latency ({e.get('latency_unit') or 'ms'} per batch)", color="tab:orange")
        latency = e.get("latency")
        if latency:
            twin.axhline(latency["bound_ms"], color="tab:orange", linestyle=":")
            twin.plot(latency["batch_size"], latency["latency_ms"], "D", color="tab:orange",
                      markersize=9, markeredgecolor="black")  # fmt: skip
