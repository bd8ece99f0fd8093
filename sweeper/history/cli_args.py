"""The history commands' arguments (`python -m sweeper.collect history ...`), apart from
the commands themselves (sweeper/history/cli.py): building the collector's parser does not
import pandas or SQLAlchemy, so `parse` and `--help` start fast."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sweeper.history.settings import DEFAULT_SPLIT


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help="database URL (default: $SWEEPER_HISTORY_URL, else sqlite:///outputs/history.db)",
    )
    h = sub.add_parser("history", help="the results history: trends and regressions")
    hs = h.add_subparsers(dest="history_command", required=True)

    p = hs.add_parser("ingest", parents=[common], help="store earlier sweeps' results")
    p.add_argument("directories", nargs="+", type=Path)
    p.add_argument(
        "--split", default=",".join(DEFAULT_SPLIT), help="environment keys that split a series"
    )
    p.set_defaults(history_command_function="cmd_ingest")

    p = hs.add_parser("list", parents=[common], help="the series stored (or --runs: each run)")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--since", help="e.g. 30d, 12h, 2026-11-01")
    p.add_argument("--runs", action="store_true", help="one line per run")
    p.set_defaults(history_command_function="cmd_list")

    p = hs.add_parser("trend", parents=[common], help="a selection over time: table and PNG")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE")
    p.add_argument(
        "--metric", default="throughput", choices=("throughput", "latency_ms", "efficiency")
    )
    p.add_argument("--since")
    p.add_argument("--out", type=Path, default=Path("trend.png"), help="the PNG (trend.png)")
    p.set_defaults(history_command_function="cmd_trend")

    p = hs.add_parser(
        "regressions", parents=[common], help="what changed for the worse (exit 1 if any)"
    )
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--since", help="only changes that began since, e.g. 7d")
    p.add_argument("--format", choices=("table", "json", "md"), default="table")
    p.add_argument("--improvements", action="store_true", help="list improvements too")
    p.add_argument("--all", action="store_true", help="include acknowledged findings")
    p.add_argument("--threshold", type=float, help="smallest relative change (default 0.05)")
    p.add_argument(
        "--metric",
        choices=("throughput", "latency_ms", "efficiency", "max_fit", "latency", "all"),
        default="throughput",
        help="the figure judged (default throughput; status flips and the batch-size "
        "search's max_fit and latency-bound batch sizes always count)",
    )
    p.set_defaults(history_command_function="cmd_regressions")

    p = hs.add_parser("ack", parents=[common], help="acknowledge a finding by its id")
    p.add_argument("id")
    p.add_argument("--note")
    p.set_defaults(history_command_function="cmd_ack")

    p = hs.add_parser("site", parents=[common], help="a static HTML report to browse")
    p.add_argument("out", type=Path)
    p.add_argument("--since")
    p.set_defaults(history_command_function="cmd_site")
