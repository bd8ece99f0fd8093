"""A selection's runs over time: a table, and a PNG with each series' line, its runs' 95%
intervals as a band, and a marker where its versions or commit changed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.history.detect import CONFIGURATION, SERIES
from sweeper.history.frames import flatten

LABEL_COLUMNS = [
    "workload",
    "model",
    "system",
    "mode",
    "data",
    "precision",
    "instances",
    "batch_size",
]


def trend_frame(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per run of each selected series: its value and interval, and what of its
    environment changed since the series' previous run."""
    rows = frame[(frame["metric"] == metric) | frame["metric"].isna()].copy()
    rows = rows.sort_values(["started_at", "key"])
    if "unit" not in rows:
        rows = rows.assign(unit=None)
    # A series never mixes units (a declaration whose unit changed starts a new one); a
    # failed run, which has no figure, goes with its configuration's unit (also a batch
    # size that never ran ok: out of memory each time).
    # (fillna: pandas' string dtype keeps a missing value missing through astype(str).)
    keys = rows[CONFIGURATION].astype(str).fillna("").agg("|".join, axis=1)
    rows["unit"] = rows["unit"].groupby(keys).transform(lambda u: u.ffill().bfill())
    rows["series"] = rows[[*SERIES, "unit"]].astype(str).fillna("").agg("|".join, axis=1)
    rows["label"] = series_labels(rows)
    rows["changed"] = ""
    for _, group in rows.groupby("series", sort=False):
        previous: dict[str, Any] | None = None
        for index, annotated in zip(group.index, group["annotations"], strict=True):
            current = flatten(json.loads(annotated))
            if previous is not None:
                diff = [f"{k}={v}" for k, v in current.items() if previous.get(k) != v]
                rows.loc[index, "changed"] = ", ".join(diff)
            previous = current
    return rows


def natural_order(label: str) -> list[tuple[int, float | str]]:
    """Numbers in a label compared as numbers: batch_size=2 before batch_size=16."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(label))
    return [(0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts)]


def series_labels(rows: pd.DataFrame) -> pd.Series:
    """Each series named by what tells it apart from the others shown."""
    varying = [c for c in LABEL_COLUMNS if rows[c].nunique() > 1] or ["batch_size"]
    extra = [c for c in ("flags", "environment") if rows[c].nunique() > 1]
    columns = varying + extra
    names = [
        " ".join(f"{c}={v}" for c, v in zip(columns, values, strict=True))
        for values in rows[columns].astype(str).itertuples(index=False)
    ]
    return pd.Series(names, index=rows.index, dtype=object)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    shown = rows[["label", "started_at", "status", "mean", "ci95_low", "ci95_high", "changed"]]
    return shown.rename(columns={"label": "series", "mean": "value"})


def plot(rows: pd.DataFrame, metric: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = figure(rows, metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def figure(rows: pd.DataFrame, metric: str) -> Any:
    """One panel per unit: two units never share an axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = rows[rows["status"] == "ok"]
    units = list(dict.fromkeys(ok["unit"].dropna())) or [None]
    fig, axes = plt.subplots(len(units), 1, figsize=(10, 5.5 * len(units)), squeeze=False)
    for ax, unit in zip(axes[:, 0], units, strict=True):
        shown = ok if unit is None else ok[ok["unit"] == unit]
        _plot_series(ax, shown)
        failed = rows[rows["status"] != "ok"]
        if not failed.empty and unit == units[0]:
            ax.plot([], [], "x", color="red", label="failed / oom (on the axis)")
            for when in failed["started_at"]:
                ax.plot(when, 0, "x", color="red")
        ax.set_ylabel(metric if unit is None else f"{metric} ({unit})")
        ax.set_xlabel("run started (UTC)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _plot_series(ax: Any, ok: pd.DataFrame) -> None:
    """Each series' line, its 95% intervals as a band, a marker where its environment
    changed."""
    for label in sorted(ok["label"].unique(), key=natural_order):
        group = ok[ok["label"] == label]
        times = group["started_at"]
        line = ax.plot(times, group["mean"], marker="o", markersize=3, label=str(label))[0]
        low, high = group["ci95_low"], group["ci95_high"]
        if low.notna().all() and high.notna().all():
            ax.fill_between(times, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        for when, changed in zip(times, group["changed"], strict=True):
            if changed:
                ax.axvline(when, color=line.get_color(), linestyle=":", linewidth=1)
                ax.annotate(
                    changed[:40],
                    (when, ax.get_ylim()[1]),
                    rotation=90,
                    fontsize=6,
                    va="top",
                    ha="right",
                    color=line.get_color(),
                )
