"""Checks of a workload's declaration (conf/workload/<name>.yaml, or the user's own): the
declaration itself (regexes, metrics), what it requires from this machine, and the checks
of its own settings it names (`checks: module:function`).

Each problem is one line that names the workload's file, the key and the fix.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable

from omegaconf import DictConfig

from sweeper.config.plain import to_dict
from sweeper.job.requirements import Requirements
from sweeper.parse.logparse import compile_formats
from sweeper.parse.metrics_file import FORMATS as FILE_FORMATS
from sweeper.parse.oom import compile_oom_patterns
from sweeper.process.forkserver import is_workload_command
from sweeper.result.stats import COMBINE_RULES


def where(cfg: DictConfig) -> str:
    return named(str(cfg.workload.name))


def named(workload: str) -> str:
    return f"workload '{workload}' (workload/{workload}.yaml)"


def check_declaration(cfg: DictConfig) -> list[str]:
    """The declaration's own soundness; needs nothing outside the config (dry runs too)."""
    workload, at = cfg.workload, where(cfg)
    metrics = workload.metrics
    problems: list[str] = []
    if metrics.combine not in COMBINE_RULES:
        problems.append(
            f"{at}: metrics.combine={metrics.combine}: must be one of {', '.join(COMBINE_RULES)}"
        )
    if metrics.drop_first < 0:
        problems.append(f"{at}: metrics.drop_first={metrics.drop_first}: must be 0 or more")
    formats = to_dict(metrics.formats)
    for name, spec in formats.items():
        try:
            compile_formats({name: spec})
        except ValueError as exc:
            problems.append(f"{at}: metrics.formats.{name}: {exc}")
    file = metrics.file
    if file is None and not formats:
        problems.append(
            f"{at}: declares no metrics: give metrics.formats (regexes over the output) or "
            "metrics.file (a results file the program writes)"
        )
    if file is not None:
        if file.format not in FILE_FORMATS:
            problems.append(
                f"{at}: metrics.file.format={file.format}: must be one of {', '.join(FILE_FORMATS)}"
            )
        elif file.format == "json" and not file.throughput:
            problems.append(
                f"{at}: metrics.file.throughput: give the key path of the throughput in the "
                "JSON file (e.g. results.throughput.mean)"
            )
        elif file.format == "lines" and not formats:
            problems.append(
                f"{at}: metrics.file.format=lines reads the file with metrics.formats' regexes: "
                "give at least one"
            )
    try:
        compile_oom_patterns(list(workload.oom_patterns))
    except ValueError as exc:
        problems.append(f"{at}: {exc}")
    if workload.fork_server:
        command = workload.command
        argv = [str(command.program), *map(str, command.positional)]
        if not is_workload_command(argv):
            problems.append(
                f"{at}: fork_server=true: only the built-in workload (python -m "
                "sweeper.workload) can start from the fork server; set fork_server: false"
            )
    return problems


def check_requirements(needs: Requirements, cwd: str | None) -> list[str]:
    """Preflight: the program, executables, files and environment variables it requires."""
    at = named(needs.workload)
    setup = f" ({needs.setup})" if needs.setup else ""
    problems: list[str] = []

    if not _executable(needs.program, cwd):
        problems.append(
            f"{at}: command.program '{needs.program}' is not on PATH: install it or give its "
            f"full path{setup}"
        )
    for i, executable in enumerate(needs.executables):
        if executable.unset or not _executable(executable.value, None):
            problems.append(
                f"{at}: requires.executables[{i}]: "
                + (
                    f"{executable.unset} is not set"
                    if executable.unset
                    else f"'{executable.value}' not found on PATH"
                )
                + setup
            )
    for i, file in enumerate(needs.files):
        if file.unset:
            problems.append(
                f"{at}: requires.files[{i}] ({file.written}): {file.unset} is not set{setup}"
            )
        elif not os.path.exists(file.value):
            problems.append(f"{at}: requires.files[{i}]: {file.value} does not exist{setup}")
    for i, variable in enumerate(needs.env_vars):
        if variable not in os.environ:
            problems.append(
                f"{at}: requires.env_vars[{i}]: ${variable} is not set (export {variable}=...)"
                + setup
            )
    return problems


def _executable(program: str, cwd: str | None) -> bool:
    if os.sep in program and not os.path.isabs(program) and cwd:
        program = os.path.join(cwd, program)  # relative to the directory it runs in
    return shutil.which(program) is not None


def own_checks(cfg: DictConfig, *, preflight: bool) -> list[str]:
    """The workload's checks of its own settings (`checks: module:function`)."""
    target = cfg.workload.checks
    if not target:
        return []
    return list(_load(str(target), where(cfg))(cfg, preflight))


def _load(target: str, at: str) -> Callable[[DictConfig, bool], list[str]]:
    module_name, _, function = target.partition(":")
    try:
        check = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{at}: checks={target}: cannot be loaded ({exc})") from None
    if not callable(check):
        raise ValueError(f"{at}: checks={target}: not a function")
    return check
