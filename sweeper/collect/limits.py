"""`sweeper limits`: the device limits this machine has measured (the efficiency's
denominator), and measuring them again (e.g. after a probe ran on a busy machine)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sweeper.process.cores import available_cores
from sweeper.workload.cache import cache_path


def add_parser(sub: Any) -> None:
    p = sub.add_parser("limits", help="the measured device limits (efficiency's peak)")
    p.add_argument(
        "--measure", action="store_true",
        help="measure this host's CPU fp32 limit again, with all its cores (needs torch)",
    )  # fmt: skip
    p.set_defaults(func=cmd_limits)


def cmd_limits(args: argparse.Namespace) -> int:
    if args.measure:
        try:
            import torch

            from sweeper.workload import work
        except ImportError:
            print("error: measuring needs torch: pip install 'sweeper[torch]'", file=sys.stderr)
            return 2
        threads = available_cores()
        torch.set_num_threads(threads)
        work.remeasure(torch.device("cpu"), torch.float32, threads)
    path = cache_path()
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    peaks = [(k.split("|")[1:], v) for k, v in sorted(entries.items()) if k.startswith("peak|")]
    if not peaks:
        print(f"no limit measured yet ({path}): a built-in run measures it, or --measure")
        return 0
    print(f"{'host':<20} {'device':<24} {'precision':<10} {'threads':>7} {'GFLOP/s':>10}")
    for (host, device, dtype, threads, _torch), flops in peaks:
        precision = dtype.removeprefix("torch.")
        print(f"{host:<20} {device:<24} {precision:<10} {threads:>7} {flops / 1e9:>10.1f}")
    print(f"(measured by a 1x1 convolution probe; cached in {path})")
    return 0
