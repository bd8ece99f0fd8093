"""`python -m sweeper.workload`: one instance of the built-in CNN benchmark."""

from __future__ import annotations

import argparse
from dataclasses import fields

from sweeper.workload.loop import Settings, run
from sweeper.workload.models import MODEL_NAMES


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m sweeper.workload", description=__doc__)
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--mode", required=True, choices=("train", "infer"))
    p.add_argument("--data", default="synthetic", choices=("synthetic", "generated", "real"))
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "16.32", "16.16"))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "rmsprop"))
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--group-dim", type=int, default=1)
    p.add_argument("--expand-ratio", type=int, default=6)
    p.add_argument("--intervals", type=int, default=6)
    p.add_argument("--steps-per-interval", type=int, default=4)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--gradient-accumulation", type=int, default=1)
    p.add_argument(
        "--optimize",
        default="auto",
        choices=("auto", "none", "torchscript", "compile"),
        help="auto: torchscript for inference, none for training",
    )
    # Off unless given: the declaration (conf/workload/builtin.yaml) passes it when set.
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--interval-s", type=float, default=None, help="seconds per interval")
    p.add_argument(
        "--target-rel-ci", type=float, default=None,
        help="measure until the 95%% CI of the mean is within this fraction of it",
    )  # fmt: skip
    p.add_argument("--min-intervals", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=30.0, help="measuring time budget")
    p.add_argument("--drop-first", type=int, default=1, help="values the collector drops")
    p.add_argument("--warmup-max-s", type=float, default=0.0, help="settling warm-up bound")
    p.add_argument(
        "--memory-limit-gb", type=float, default=None, help="memory beyond start-up, in GiB"
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data-format", default="auto", choices=("auto", "tfrecord", "folder"))
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
