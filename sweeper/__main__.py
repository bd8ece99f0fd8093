"""`python -m sweeper`: the Hydra application. One job per composed config; `-m` sweeps."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

import sweeper.schema  # noqa: F401  (registers the config schema and hydra/sweeper=benchmark)
from sweeper import app, interrupt, reaper, sweep, sweep_dir
from sweeper.app import prepare_benchmark, run_benchmark

sweep_dir.register_resolver()
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _task(cfg: DictConfig) -> Any:
    return run_benchmark(cfg)


# The local launcher (sweeper/local_launcher.py) calls this for the next job while the
# current one runs.
_task.prepare = prepare_benchmark  # type: ignore[attr-defined]
_app = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_task)


def main() -> None:
    # Every process the sweep starts carries its mark (sweeper/reaper.py): none outlives it.
    os.environ[reaper.MARK_ENV] = reaper.own_mark()
    interrupt.install()
    # A full disk is reported once by the sweep, not as a traceback for each log record.
    logging.raiseExceptions = False
    _app()
    stopped = interrupt.exit_status()
    if stopped is not None:
        sys.exit(stopped)
    outcome = sweep.last_outcome
    if outcome is not None:
        sys.exit(0 if outcome.succeeded else 1)
    if app.single_run_status not in (None, "ok"):
        sys.exit(1)


if __name__ == "__main__":
    main()
