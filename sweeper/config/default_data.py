"""A workload's default data by mode (`workload.default_data`): Graphcore's app trains on
the seed's real data and infers on synthetic data. Hydra's defaults list cannot choose a
group's option by another group's choice (an override inside an interpolated group is
refused), so a job that did not choose `data=` gets the override added here, before it is
composed for good: in its overrides (a SLURM job composes again from them) and in its
.hydra/ record."""

from __future__ import annotations

from omegaconf import DictConfig


def chosen(overrides: list[str]) -> bool:
    return any(o.lstrip("+~").startswith("data=") for o in overrides)


def override_for(cfg: DictConfig, overrides: list[str]) -> str | None:
    """`data=<the workload's default for this mode>` when the job did not choose its data
    and the composed default differs; else None."""
    if chosen(overrides):
        return None
    wanted = (cfg.workload.get("default_data") or {}).get(cfg.mode.name)
    return f"data={wanted}" if wanted and wanted != cfg.data.name else None


def for_single_run(arguments: list[str], config_dir: str) -> list[str]:
    """The override a single run (no -m) needs, found by composing its config once; nothing
    when it chose its data, sweeps (each job gets its own when composed), or its config
    cannot be composed here (Hydra then says why)."""
    if "-m" in arguments or "--multirun" in arguments or chosen(arguments):
        return []
    if any(a.startswith("-") for a in arguments):  # --config-dir and other Hydra flags
        return []
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in arguments if not a.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError):
        return []
    found = override_for(cfg, overrides)
    return [found] if found else []
