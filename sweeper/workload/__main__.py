"""`python -m sweeper.workload`: one instance of the built-in CNN benchmark."""

from __future__ import annotations

from sweeper.workload.settings import Settings, argument_parser, parse


def parse_args(argv: list[str] | None = None) -> Settings:
    from sweeper.workload.models import MODEL_NAMES

    return parse(argv, argument_parser("python -m sweeper.workload", __doc__, MODEL_NAMES))


def main(argv: list[str] | None = None) -> None:
    from sweeper.workload.loop import run

    run(parse_args(argv))


if __name__ == "__main__":
    main()
