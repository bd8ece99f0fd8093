"""The metric formats each workload declares (conf/workload/*.yaml, `metrics`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from omegaconf import OmegaConf

from sweeper.config.plain import to_dict
from sweeper.config.recipes import CONF_DIR
from sweeper.parse.logparse import MetricPatterns, compile_formats
from sweeper.workload.settings import MeasureSettings


def known_workloads() -> dict[str, dict[str, Any]]:
    """Each workload's metrics declaration, by workload name."""
    found = {}
    for path in sorted((CONF_DIR / "workload").glob("*.yaml")):
        # Under `workload`, as composed (over the schema's settings): its metrics may refer
        # to its own keys.
        declared = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        assert isinstance(declared, dict)
        # Keys that may refer to the whole config (a file's path, the model's work): not
        # what a log's figures are read by.
        for key in ("file", "flops_per_sample", "flops_source"):
            (declared.get("metrics") or {}).pop(key, None)
        defaults = {"workload": asdict(MeasureSettings())}
        workload = OmegaConf.merge(defaults, {"workload": declared}).workload
        found[path.stem] = to_dict(workload.metrics)
    return found


def workload_patterns(name: str | None = None) -> list[MetricPatterns]:
    """Compiled formats of one workload, or of every workload in turn (auto-detection)."""
    workloads = known_workloads()
    chosen = [workloads[name]] if name else list(workloads.values())
    return [fmt for metrics in chosen for fmt in compile_formats(metrics["formats"])]
