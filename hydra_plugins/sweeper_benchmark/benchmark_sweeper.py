"""`hydra/sweeper=benchmark`: Hydra's entry point to sweeper's sweep (sweeper/sweep/benchmark.py).

No `from __future__ import annotations` here: Hydra executes plugin modules without
registering them in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from sweeper.sweep.benchmark import BenchmarkSweep


@dataclass
class BenchmarkSweeperConf:
    _target_: str = "hydra_plugins.sweeper_benchmark.benchmark_sweeper.BenchmarkSweeper"
    # Sweep parameters from config, as in Hydra's basic sweeper (conf/sweep/ presets).
    params: dict[str, str] | None = None


class BenchmarkSweeper(BenchmarkSweep):
    """Registered with Hydra; the behaviour is sweeper.sweep.benchmark.BenchmarkSweep's."""


ConfigStore.instance().store(
    group="hydra/sweeper", name="benchmark", node=BenchmarkSweeperConf, provider="sweeper"
)
