"""`hydra/launcher=slurm`: Hydra's entry point to sweeper's SLURM launcher
(sweeper/where/slurm.py).

No `from __future__ import annotations`: Hydra executes plugin modules without registering
them in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

from sweeper.where.slurm import SlurmJobs


@dataclass
class BenchmarkSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.sweeper_benchmark.slurm_launcher.BenchmarkSlurmLauncher"


class BenchmarkSlurmLauncher(SlurmJobs):
    """Registered with Hydra; the behaviour is sweeper.where.slurm.SlurmJobs'."""


ConfigStore.instance().store(
    group="hydra/launcher", name="slurm", node=BenchmarkSlurmConf, provider="sweeper"
)
