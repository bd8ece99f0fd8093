"""`python -m sweeper.collect history ...`: ingest, list, trend, regressions, ack, site."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pandas as pd

from sweeper.history import query
from sweeper.history.settings import HistorySettings
from sweeper.history.url import HistoryUrlError, chosen_url

if TYPE_CHECKING:
    from sweeper.history.detect import Finding
    from sweeper.history.store import Store

# The database, detection, plots and site are imported by the commands that use them:
# `python -m sweeper.collect` starts fast for its other commands, and `ingest` loads no
# statistics or plotting.


def run(args: argparse.Namespace) -> int:
    """A history command; a database that cannot be used is one line and exit 2."""
    from sweeper.history.store import HistoryError

    try:
        return int(globals()[args.history_command_function](args))
    except (HistoryError, HistoryUrlError, query.QueryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _store(args: argparse.Namespace, create: bool = False) -> Store:
    from sweeper.history.store import Store

    return Store(chosen_url(cli=args.db), create=create)


def cmd_ingest(args: argparse.Namespace) -> int:
    split = [k for k in args.split.split(",") if k]
    problems = HistorySettings(split=split).problems()
    if problems:
        raise query.QueryError("; ".join(problems))
    missing = [str(d) for d in args.directories if not d.is_dir()]
    if missing:
        raise query.QueryError(f"not a directory: {', '.join(missing)}")
    from sweeper.history import ingest

    store = _store(args, create=True)
    read, added = ingest.ingest(store, ingest.result_files(args.directories), split)
    print(f"{read} result(s) read, {added} new run(s) stored in {store.url}")
    return 0 if read else 1


def _frame(args: argparse.Namespace, store: Store) -> pd.DataFrame:
    frame = store.runs_frame(query.parse_since(getattr(args, "since", None)))
    return query.select(frame, query.parse_filters(getattr(args, "filters", [])))


def cmd_list(args: argparse.Namespace) -> int:
    from sweeper.history.detect import SERIES

    frame = _frame(args, _store(args))
    if frame.empty:
        print("no runs match")
        return 0
    if args.runs:
        columns = [*SERIES[:-2], "status", "unstable", "metric", "mean", "unit", "started_at"]
        columns.append("sweep")
        shown = frame[[*columns, "reason"]].fillna({"reason": ""})
        shown = shown.assign(mean=_figures(shown["mean"], shown["metric"]))
        print(shown.to_string(index=False, max_colwidth=None, float_format=_figure, na_rep=""))
        return 0
    series = (
        frame.assign(metric=frame["metric"].fillna("-"))
        .groupby([*SERIES, "metric"], dropna=False, sort=True)
        .agg(runs=("key", "nunique"), last=("started_at", "max"), latest=("mean", "last"))
        .reset_index()
    )
    shown = series.drop(columns=["flags", "environment"])
    shown = shown.assign(latest=_figures(shown["latest"], shown["metric"]))
    print(shown.to_string(index=False, float_format=_figure, na_rep=""))
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    from sweeper.history import trend

    frame = _frame(args, _store(args))
    rows = trend.trend_frame(frame, args.metric) if not frame.empty else frame
    if rows.empty:
        print("no runs match", file=sys.stderr)
        return 1
    print(trend.table(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(trend.plot(rows, args.metric, args.out))
    return 0


def current_findings(args: argparse.Namespace, store: Store) -> list[Finding]:
    from sweeper.history import detect

    settings = HistorySettings()
    if getattr(args, "threshold", None) is not None:
        settings.threshold = args.threshold
    frame = store.runs_frame()
    frame = query.select(frame, query.parse_filters(getattr(args, "filters", [])))
    metric = getattr(args, "metric", "all")
    if metric in ("max_fit", "latency") and not frame.empty:
        frame = frame.iloc[0:0]  # only the searches' answers
    elif metric != "all" and not frame.empty:
        frame = frame[frame["metric"].isna() | (frame["metric"] == metric)]
    return detect.findings(
        frame,
        settings,
        acked=store.acked(),
        improvements=getattr(args, "improvements", True),
        since=query.parse_since(getattr(args, "since", None)),
        answers=_search_answers(args, store, metric),
    )


def _search_answers(args: argparse.Namespace, store: Store, metric: str) -> pd.DataFrame:
    """The searches' answers under the same filters (those that apply to a search's cell:
    not its batch size, status or metric)."""
    answers = store.search_answers_frame()
    if metric in ("max_fit", "latency") and not answers.empty:
        answers = answers[answers["answer"] == metric]
    filters = query.parse_filters(getattr(args, "filters", []))
    return query.select(answers, {k: v for k, v in filters.items() if k in answers.columns
                                  and k not in ("batch_size", "status")})  # fmt: skip


def cmd_regressions(args: argparse.Namespace) -> int:
    found = current_findings(args, _store(args))
    shown = [f for f in found if args.all or not f.acked]
    if args.format == "json":
        from sweeper.result.files import finite_json

        found = finite_json([f.to_dict() for f in shown])
        print(json.dumps(found, indent=2, default=str, allow_nan=False))
    elif shown:
        table = findings_table(shown)
        if args.format == "md":
            print(table.to_markdown(index=False))
        else:
            print(table.to_string(index=False))
    else:
        print("no regressions" + (" or improvements" if args.improvements else ""))
    return 1 if any(f.kind == "regression" and not f.acked for f in shown) else 0


def findings_table(found: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": f.id,
                "kind": f.kind + (" (acked)" if f.acked else ""),
                "workload": f.workload,
                "model": f.model,
                "system": f.system,
                "mode": f.mode,
                "batch_sizes": ",".join(map(str, f.batch_sizes)),
                "metric": f.metric,
                "change_%": "" if f.change_pct is None else f"{f.change_pct:+.1f}",
                "before": _short(f.before),
                "after": _short(f.after),
                "since": f.since[:19],
                "evidence": f.evidence,
            }
            for f in found
        ]
    )


def _short(value: float | str) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def cmd_ack(args: argparse.Namespace) -> int:
    store = _store(args)
    found = [f for f in current_findings(args, store) if f.id.startswith(args.id)]
    if len(found) != 1:
        what = "no finding" if not found else f"{len(found)} findings"
        raise query.QueryError(
            f"{what} with id {args.id!r}: see `python -m sweeper.collect history regressions"
            " --improvements --all`"
        )
    store.ack(found[0].id, args.note, datetime.now(timezone.utc))
    print(f"acknowledged {found[0].id}: {found[0].kind} of {found[0].metric}")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from sweeper.history import detect, site

    store = _store(args)
    frame = store.runs_frame(query.parse_since(args.since))
    found = detect.findings(
        frame,
        HistorySettings(),
        acked=store.acked(),
        improvements=True,
        answers=store.search_answers_frame(),
    )
    index = site.write_site(frame, found, args.out)
    print(index)
    return 0


def _figures(values: pd.Series, metrics: pd.Series) -> list[str]:
    """Each figure as the tables show it; an efficiency (a share) as a percentage."""
    return [
        "" if pd.isna(v) else f"{v:.2%}" if m == "efficiency" else _figure(v)
        for v, m in zip(values, metrics, strict=True)
    ]


def _figure(value: float) -> str:
    """A figure as the tables show it: two decimals, never exponent notation."""
    return f"{value:.2f}"
