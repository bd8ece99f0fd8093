"""`python -m sweeper`: the Hydra application. One job per composed config; `-m` sweeps."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra._internal.hydra import Hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import sweeper
import sweeper.config.schema  # registers the config schema and hydra/sweeper=benchmark
from sweeper.config import default_data, recipes
from sweeper.config import keys as config_keys
from sweeper.errors import UserError
from sweeper.history.url import password_out_of_argv
from sweeper.job.outcome import REFUSED, outcome
from sweeper.job.task import run_benchmark
from sweeper.process import interrupt, quick_exit, reaper
from sweeper.sweep import detach, slurm_chain
from sweeper.sweep import directory as sweep_dir

sweep_dir.register_resolver()
CONF_DIR = str(recipes.CONF_DIR)


def _task(cfg: DictConfig) -> Any:
    outcome.started = True
    try:
        return run_benchmark(cfg)
    except UserError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records it as this job's failure
        print(exc, file=sys.stderr)
        outcome.refuse()
        return None


_app = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_task)


def _groups() -> set[str]:
    """The config groups (conf/<group>/, and a user's --config-dir groups)."""
    dirs = [Path(CONF_DIR)]
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(Path(args[i + 1]).expanduser())
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]).expanduser())
    return {p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()}


def _multirun_flag_first(args: list[str]) -> list[str]:
    """Hydra's argparse takes -m (--multirun) only before the overrides: users put it
    anywhere."""
    flags = [a for a in args if a in ("-m", "--multirun")]
    if not flags:
        return args
    return [flags[0], *(a for a in args if a not in ("-m", "--multirun"))]


def _flags_added(args: list[str]) -> list[str]:
    """`flags.<name>=` sets a flag whether or not the command has it yet: Hydra's `++`
    (add or override), which the `flags` mapping needs in Hydra's struct mode."""
    return [f"++{a}" if a.startswith("flags.") else a for a in args]


# Options that may choose another primary config than ours, whose hydra.mode may be set.
_PRIMARY_CONFIG_OPTIONS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def _writes_a_report(args: list[str]) -> bool:
    """Whether the command is a sweep that may write a report (its config may still say
    otherwise: the sweep then closes the worker forked for it)."""
    if "-m" not in args and "--multirun" not in args:
        return False
    return not any(a.lstrip("+").lower() in ("dry_run=true", "detach=true") for a in args)


def _mode_known(args: list[str]) -> bool:
    """Hydra composes the whole primary config once only to read hydra.mode, then again to
    run (0.2 s of a sweep's start here). With -m, our primary config (hydra.mode unset) and
    no hydra.mode override, its answer is known: none, and -m makes the run a multirun."""
    if "-m" not in args and "--multirun" not in args:
        return False
    return not any(
        arg.lstrip("+~").startswith("hydra.mode=")
        or arg.split("=", 1)[0] in _PRIMARY_CONFIG_OPTIONS
        for arg in args
    )


def _no_mode_set(self: Hydra, config_name: str | None, overrides: list[str]) -> None:
    return None  # Hydra.get_mode's answer for a primary config that sets no hydra.mode


def main() -> None:
    if sys.argv[1:2] in (["--version"], ["-V"]):
        print(f"sweeper {sweeper.__version__}")
        return
    if sys.argv[1:2] in (["limits"], ["status"], ["cancel"]):  # the collector's commands
        from sweeper.collect.__main__ import main as collect_main

        collect_main(sys.argv[1:])
    unknown = config_keys.check_overrides(sys.argv[1:], _groups())
    if unknown:
        print("\n".join(unknown), file=sys.stderr)
        sys.exit(REFUSED)
    sys.argv[1:] = password_out_of_argv(_flags_added(_multirun_flag_first(sys.argv[1:])))
    sys.argv += default_data.for_single_run(sys.argv[1:], CONF_DIR)
    slurm_chain.enter_step()  # a detached sweep's driver step on SLURM
    # Every process the sweep starts carries its mark (sweeper/process/reaper.py): none outlives it.
    os.environ[reaper.MARK_ENV] = slurm_chain.step_mark() or reaper.own_mark()
    interrupt.install()
    if _mode_known(sys.argv[1:]):
        Hydra.get_mode = _no_mode_set  # type: ignore[method-assign]
    # A full disk is reported once by the sweep, not as a traceback for each log record.
    logging.raiseExceptions = False
    if _writes_a_report(sys.argv[1:]):
        from sweeper.sweep import finish  # a single run never needs it

        finish.fork_report_worker()
    try:
        _app()
    except SystemExit as exc:
        # Hydra's own refusal of the command (an unknown group option, a malformed
        # override), before anything of ours began: bad input, as ours is.
        if exc.code == 1 and not outcome.started:
            sys.exit(REFUSED)
        raise
    stopped = interrupt.exit_status()
    status = stopped if stopped is not None else outcome.exit_status()
    detach.record_exit(status)  # a detached sweep's driver: for `sweeper status`
    sys.exit(status)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as end:
        # An exit status (not a message to print): without the interpreter's teardown.
        if end.code is None or isinstance(end.code, int):
            quick_exit.exit_now(end.code or 0)
        raise
    quick_exit.exit_now(0)
