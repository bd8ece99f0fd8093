"""`history site OUT`: a static, self-contained report (OUT/index.html and OUT/assets/),
viewable with no network: the regressions, an index of series, each configuration's trend
with its runs' intervals as bands, and the latest sweep's throughput against batch size over
the sweep before it.

Every value from the history reaches the page only as JSON data (in a non-executable
<script type="application/json">, with <, > and & escaped) that site.js puts into the page
as text; the page's Content-Security-Policy allows no inline script besides."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.history.detect import CONFIGURATION, SERIES, Finding
from sweeper.history.trend import series_labels, trend_frame
from sweeper.result.files import finite_number

ASSETS = Path(__file__).resolve().parent / "site_assets"
METRIC = "throughput"
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self';
  style-src 'self' 'unsafe-inline'; img-src 'self' data:">
<title>Benchmark history</title>
<link rel="stylesheet" href="assets/site.css">
</head>
<body>
<header>
<h1>Benchmark history</h1>
<p id="summary"></p>
<label>Filter <input id="filter" type="search"
  placeholder="model, system, batch size, host ..."></label>
</header>
<section><h2>Regressions and improvements</h2><table id="findings"></table></section>
<section><h2>Series</h2><table id="series"></table></section>
<section><h2>Configurations</h2><div id="configurations"></div></section>
<script id="history-data" type="application/json">{data}</script>
<script src="assets/plotly.min.js"></script>
<script src="assets/site.js"></script>
</body>
</html>
"""


def write_site(frame: pd.DataFrame, found: list[Finding], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    assets = out / "assets"
    assets.mkdir(exist_ok=True)
    _vendor_plotly(assets / "plotly.min.js")
    for name in ("site.js", "site.css"):
        shutil.copyfile(ASSETS / name, assets / name)
    data = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "findings": [f.to_dict() for f in found],
        "series": _series_index(frame),
        "configurations": _configurations(frame),
    }
    index = out / "index.html"
    index.write_text(_PAGE.replace("{data}", script_json(data)))
    return index


def script_json(data: Any) -> str:
    """JSON that cannot end its <script> element or open another (no <, >, & as such)."""
    text = json.dumps(data, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _vendor_plotly(target: Path) -> None:
    if not target.exists():
        from plotly.offline import get_plotlyjs

        target.write_text(get_plotlyjs())


def _series_index(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    measured = frame[frame["metric"] == METRIC]
    runs = frame.drop_duplicates("key").sort_values("started_at")
    rows = []
    for _, group in runs.groupby(SERIES, sort=True, dropna=False):
        last = group.iloc[-1]
        values = measured[measured["key"].isin(group[group["status"] == "ok"]["key"])]
        own = measured[measured["key"] == last["key"]]
        rows.append(
            {
                **{c: _plain(last[c]) for c in SERIES if c not in ("flags", "environment")},
                "environment": json.loads(last["environment"]),
                "runs": len(group),
                "last_run": pd.Timestamp(last["started_at"]).isoformat(),
                "last_status": str(last["status"]),
                # The last run's own figure (none when it failed), and the newest figure of
                # a run that succeeded: never one run's figure beside another's status.
                "last_value": (
                    finite_number(own["mean"].iloc[-1])
                    if last["status"] == "ok" and not own.empty
                    else None
                ),
                "last_ok": finite_number(values["mean"].iloc[-1]) if not values.empty else None,
            }
        )
    return rows


def _configurations(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per configuration (all but the batch size): its trend traces and its latest sweep's
    curve with the sweep before it."""
    if frame.empty:
        return []
    rows = trend_frame(frame, METRIC)
    configurations = []
    # A configuration's card never mixes units (one axis each).
    for _, group in rows.groupby([*CONFIGURATION, "unit"], sort=True, dropna=False):
        first = group.iloc[0]
        title = " ".join(
            f"{c}={first[c]}"
            for c in CONFIGURATION
            if c not in ("flags", "environment") and first[c] not in ("", None)
        )
        group = group.assign(label=series_labels(group))
        traces = []
        ordered = group.sort_values(["batch_size", "started_at"], kind="stable")
        for label, series in ordered.groupby("label", sort=False):
            ok = series[series["status"] == "ok"]
            traces.append(
                {
                    "name": str(label),
                    "time": [pd.Timestamp(t).isoformat() for t in ok["started_at"]],
                    "value": [finite_number(v) for v in ok["mean"]],
                    "low": [finite_number(v) for v in ok["ci95_low"]],
                    "high": [finite_number(v) for v in ok["ci95_high"]],
                    "changed": [str(c) for c in ok["changed"]],
                    "failed": [
                        {"time": pd.Timestamp(t).isoformat(), "status": str(s)}
                        for t, s in zip(
                            series.loc[series["status"] != "ok", "started_at"],
                            series.loc[series["status"] != "ok", "status"],
                            strict=True,
                        )
                    ],
                }
            )
        configurations.append(
            {
                "title": title,
                "unit": None if pd.isna(first["unit"]) else str(first["unit"]),
                "flags": json.loads(first["flags"]),
                "environment": json.loads(first["environment"]),
                "traces": traces,
                "sweeps": _latest_sweeps(group),
            }
        )
    return configurations


def _latest_sweeps(group: pd.DataFrame) -> list[dict[str, Any]]:
    """The newest sweep's throughput against batch size, and the one before it (baseline)."""
    ok = group[group["status"] == "ok"]
    if ok.empty:
        return []
    order = ok.groupby("sweep")["started_at"].max().sort_values()
    chosen = list(order.index[-2:])
    curves = []
    for role, sweep in zip(["baseline", "latest"][-len(chosen) :], chosen, strict=True):
        points = ok[ok["sweep"] == sweep].groupby("batch_size")["mean"].mean().sort_index()
        curves.append(
            {
                "role": role,
                "sweep": str(sweep),
                "batch_size": [int(b) for b in points.index],
                "value": [finite_number(v) for v in points],
            }
        )
    return curves


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
