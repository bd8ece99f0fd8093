"""`hydra/launcher=local`: Hydra's entry point to sweeper's local launcher
(sweeper/where/local.py), the default in conf/config.yaml.

No `from __future__ import annotations`: see benchmark_sweeper.py.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from sweeper.where.local import LocalLauncher


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.sweeper_benchmark.local_launcher.BenchmarkLocalLauncher"


class BenchmarkLocalLauncher(LocalLauncher):
    """Registered with Hydra; the behaviour is sweeper.where.local.LocalLauncher's."""


ConfigStore.instance().store(
    group="hydra/launcher", name="local", node=LocalLauncherConf, provider="sweeper"
)
