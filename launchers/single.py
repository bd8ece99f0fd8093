"""One process: the workload's own command line."""

from __future__ import annotations

from sweeper.launchers import InstanceLauncher, register


@register
class SingleLauncher(InstanceLauncher):
    name = "single"
    max_instances = 1

    def command(self, workload_argv: list[str]) -> list[str]:
        return list(workload_argv)
