"""resume=true without hydra.sweep.dir: the earlier sweep of the same command is found and
continued in its own directory."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper.job.identity import RUN_OPTIONS
from sweeper.sweep.directory import in_use


def use_earlier_sweep_dir(config: DictConfig, configs: list[DictConfig]) -> None:
    """Continues the newest sweep that ran the same command (same overrides but for
    resume). The jobs' composed configs move there too, as if hydra.sweep.dir had been
    given."""
    if any(o.startswith("hydra.sweep.dir=") for o in config.hydra.overrides.hydra):
        return
    wanted = _without_run_options(list(config.hydra.overrides.task))
    root = Path(str(config.hydra.sweep.dir)).parent
    candidates = sorted(root.glob("*/multirun.yaml"), key=lambda p: p.stat().st_mtime)
    for path in reversed(candidates):
        earlier = OmegaConf.load(path)
        task = list(OmegaConf.select(earlier, "hydra.overrides.task", default=[]) or [])
        if _without_run_options(task) == wanted and not in_use(path.parent):
            move_sweep(path.parent, [config, *configs])
            print(f"resuming the sweep in {path.parent}", file=sys.stderr)
            return
    print(
        "resume=true: no earlier sweep of this command found; starting a new one", file=sys.stderr
    )


def move_sweep(sweep_dir: Path, configs: list[DictConfig]) -> None:
    """Points the sweep's and its jobs' configs at sweep_dir, as `hydra.sweep.dir=` would
    (the override also reaches jobs that a scheduler composes again)."""
    for cfg in configs:
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(sweep_dir)
            cfg.hydra.overrides.hydra.append(f"hydra.sweep.dir={sweep_dir}")


def _without_run_options(overrides: list[str]) -> list[str]:
    """The overrides that say what a sweep measures (the same sweep, however it is run)."""
    return sorted(
        o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".")[0] not in RUN_OPTIONS
    )
