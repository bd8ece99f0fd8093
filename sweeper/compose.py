"""Composing a sweep's job configs once per distinct group selection.

Stock Hydra composes every job from scratch (defaults tree, file loads, merges): ~100 ms
per job here, most of a dry run's time. Jobs of a sweep mostly differ only in values
(batch_size=1,2,4,...): this composes each distinct selection of config groups once, then
applies the value overrides with Hydra's own override code and fills in the job's Hydra
bookkeeping as Hydra does. Anything unusual (+/~ overrides, Hydra's own keys) takes
Hydra's path. tests/test_compose.py checks the result equals Hydra's, job by job.
"""

from __future__ import annotations

import copy

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict


class JobComposer:
    def __init__(self, hydra_context: HydraContext, master: DictConfig) -> None:
        self.loader = hydra_context.config_loader
        self.master = master
        self.parser = OverridesParser.create(config_loader=self.loader)
        self.bases: dict[tuple[str, ...], DictConfig] = {}

    def stock(self, overrides: list[str]) -> DictConfig:
        """Hydra's own composition of one job."""
        return self.loader.load_sweep_config(self.master, list(overrides))

    def compose(self, overrides: list[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        groups = [o for o in parsed if self._is_group(o)]
        values = [o for o in parsed if not self._is_group(o)]
        if any(self._needs_hydra(o) for o in values):
            return self.stock(overrides)
        key = tuple(str(o.input_line) for o in groups)
        base = self.bases.get(key)
        if base is None:
            base = self.bases[key] = self.stock(list(key))
        cfg = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        task = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [str(o.input_line) for o in task]
            job.override_dirname = get_overrides_dirname(
                overrides=task,
                kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys,
            )
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg

    def _is_group(self, override: Override) -> bool:
        key = override.get_key_element()
        return (
            not override.is_hydra_override()
            and not override.is_add()
            and not override.is_delete()
            and self.loader.repository.group_exists(key.split("@")[0])  # type: ignore[attr-defined]
        )

    @staticmethod
    def _needs_hydra(override: Override) -> bool:
        return (
            override.is_hydra_override()
            or override.is_add()
            or override.is_delete()
            or override.is_force_add()
            or override.is_sweep_override()
        )
