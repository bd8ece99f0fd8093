"""A Hydra job callback for tests/test_local_launcher.py: writes what Hydra gives it at each
job's end (the job's config, and the task's config in its JobReturn) as one JSON line to
$JOB_CALLBACK_FILE."""

from __future__ import annotations

import json
import os
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class RecordJobEnd(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        task_cfg = job_return.cfg
        line = {
            "config": OmegaConf.to_container(config, resolve=False),
            "task_cfg": None if task_cfg is None else OmegaConf.to_container(task_cfg),
        }
        with open(os.environ["JOB_CALLBACK_FILE"], "a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\n")
