"""`hydra/sweeper=batch_search`: Hydra's entry point to the batch-size search
(sweeper/sweep/search/). Its parameters are SearchSettings' (sweeper/sweep/search/settings.py).

No `from __future__ import annotations` here: Hydra executes plugin modules without
registering them in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

from sweeper.sweep.search.settings import SearchSettings
from sweeper.sweep.search.sweep import BatchSearch


@dataclass
class BatchSearchConf(SearchSettings):
    _target_: str = "hydra_plugins.sweeper_benchmark.batch_search_sweeper.BatchSearchSweeper"
    # The other swept choices from config (conf/sweep/ presets), as in Hydra's basic sweeper.
    params: Optional[dict[str, str]] = None  # noqa: UP045 (evaluated at run time by OmegaConf)


class BatchSearchSweeper(BatchSearch):
    """Registered with Hydra; the behaviour is sweeper.sweep.search.sweep.BatchSearch's."""

    def __init__(self, params: Optional[dict[str, str]] = None, **settings: object) -> None:  # noqa: UP045
        super().__init__(SearchSettings(**settings), params)  # type: ignore[arg-type]


ConfigStore.instance().store(
    group="hydra/sweeper", name="batch_search", node=BatchSearchConf, provider="sweeper"
)
