"""Configs written as YAML as OmegaConf writes them (OmegaConf.to_yaml, OmegaConf.save), on
libyaml's emitter: the same bytes, about 3x faster. A sweep writes three such files for every
job (.hydra/) and its multirun.yaml before the first job starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import OmegaConfDumper

# libyaml's emitter when PyYAML was built with it (the usual wheels), else PyYAML's own.
_Emitter: Any = getattr(yaml, "CDumper", yaml.Dumper)


class _LibyamlDumper(_Emitter):
    """OmegaConf's YAML dialect (strings that read as bool/int/float quoted) on libyaml."""


_LibyamlDumper.add_representer(str, OmegaConfDumper.str_representer)


def yaml_text(data: Any) -> str:
    """OmegaConf.to_yaml's text for a plain container."""
    return str(
        yaml.dump(
            data,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=False,
            Dumper=_LibyamlDumper,
        )
    )


def save(config: DictConfig, path: Path) -> None:
    """OmegaConf.save(config, path): the config as written (interpolations unresolved)."""
    container = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
    path.write_text(yaml_text(container), encoding="utf-8")
