"""`python -m sweeper.collect`: parse a log, rebuild a sweep's report, compare sweeps."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import sweeper
from sweeper.collect import CompareError, limits, status
from sweeper.history import cli_args as history_args
from sweeper.parse.formats import known_workloads
from sweeper.parse.logparse import MetricPatterns, compile_formats, parse_file
from sweeper.result.evaluate import MetricRules, evaluate
from sweeper.result.files import finite_json
from sweeper.result.model import Status

# The report, compare and history commands import pandas (and SQLAlchemy) when they run:
# `parse` of a large log starts in a fraction of a second.


def cmd_parse(args: argparse.Namespace) -> int:
    workloads = known_workloads()
    if args.workload:
        if args.workload not in workloads:
            print(f"unknown workload '{args.workload}': {', '.join(workloads)}", file=sys.stderr)
            return 2
        workloads = {args.workload: workloads[args.workload]}
    patterns: list[MetricPatterns] = []
    owner: dict[str, dict] = {}
    for metrics in workloads.values():
        for fmt in compile_formats(metrics["formats"]):
            if args.format in (None, fmt.name):
                patterns.append(fmt)
                owner[fmt.name] = metrics
    if not patterns:
        print(f"unknown format '{args.format}'", file=sys.stderr)
        return 2
    parsed = parse_file(args.log, patterns)
    declared = owner.get(parsed.format or "", next(iter(owner.values())))
    rules = MetricRules(
        drop_first=args.drop_first if args.drop_first is not None else declared["drop_first"],
        combine=args.combine or declared["combine"],
        unstable_cv=declared.get("unstable_cv", 0.10),
    )
    result = evaluate(parsed, rules)
    out = {"status": result.status, "instances": result.instances_reporting, **result.to_dict()}
    del out["instances_reporting"]
    if not args.values:
        out.pop("per_instance")
    print(json.dumps(finite_json(out), indent=2, allow_nan=False))
    return 0 if result.status == Status.OK else 1


def cmd_report(args: argparse.Namespace) -> int:
    from sweeper.collect.report import load_results, print_table, results_frame, write_report

    directories = [Path(d) for d in args.directories]
    for d in directories:
        if not d.is_dir():
            print(f"error: {d}: not a directory", file=sys.stderr)
            return 2
    frame = results_frame(load_results(directories))
    if frame.empty:
        print(f"error: no result.json under {', '.join(map(str, directories))}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else directories[0]
    for path in write_report(frame, out):
        print(path)
    print_table(frame)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from sweeper.collect.compare import (
        check_references,
        compare,
        is_failing,
        load_references,
        load_table,
    )

    # Read in the order given: an error names the first input that cannot be used.
    if args.reference:
        references = load_references(Path(args.reference))
        table = check_references(load_table(Path(args.new)), references)
    elif args.base:
        base = load_table(Path(args.base))
        table = compare(base, load_table(Path(args.new)), args.tolerance)
    else:
        print("compare needs BASE and NEW, or --reference FILE and NEW", file=sys.stderr)
        return 2
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    counts = table["verdict"].value_counts()
    bad = {v: n for v, n in counts.items() if is_failing(str(v))}
    if bad:
        print(
            "failing: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(bad.items())),
            file=sys.stderr,
        )
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sweeper.collect", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sweeper {sweeper.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="one log to one JSON object (exit 0 when status is ok)")
    p.add_argument("log", type=Path)
    p.add_argument("--workload", help="whose formats to try (default: every known format)")
    p.add_argument("--format", help="one format by name (default: auto-detect)")
    p.add_argument("--drop-first", type=int, help="values dropped per instance (default: declared)")
    p.add_argument(
        "--combine", choices=("mean", "sum"), help="across instances (default: declared)"
    )
    p.add_argument("--values", action="store_true", help="include every instance's values")
    p.set_defaults(func=cmd_parse)
    r = sub.add_parser("report", help="rebuild results.csv, summary.md and plots")
    r.add_argument("directories", nargs="+")
    r.add_argument("--out", help="where to write (default: the first directory)")
    r.set_defaults(func=cmd_report)
    c = sub.add_parser("compare", help="change per configuration, or a reference check")
    c.add_argument("base", nargs="?", help="baseline sweep directory or results.csv")
    c.add_argument("new", help="sweep directory or results.csv to judge")
    c.add_argument("--tolerance", type=float, default=5.0, help="percent (default 5)")
    c.add_argument("--reference", help="YAML list of reference figures with lower/upper bounds")
    c.set_defaults(func=cmd_compare)
    history_args.add_parser(sub)
    limits.add_parser(sub)
    status.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "history":
            from sweeper.history import cli as history_cli

            code = history_cli.run(args)
        else:
            code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped (`| head`): not an error of ours; nothing more is written.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except (CompareError, OSError) as exc:
        # Input that cannot be read or used: one line, no traceback (exit 2, as argparse).
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
