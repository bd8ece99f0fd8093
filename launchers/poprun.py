"""Graphcore's poprun: N instances of a PopDist program over OpenMPI.

Options are rendered `--flag=value` in a fixed order, with values exactly as configured so a
recipe reproduces the seed's spelling (`--numa-aware=yes`, `--numa-aware 1`). Output is
tagged per instance through OpenMPI's `orte_tag_output` parameter, passed in the
environment rather than on the command line, so the rendered command stays the seed's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweeper.launchers import MPI_FAILURE, InstanceLauncher, LauncherOptions, register


@dataclass
class PoprunOptions(LauncherOptions):
    executable: str = "poprun"
    num_replicas: int | None = None
    ipus_per_replica: int | None = None
    numa_aware: str | None = None
    host: str | None = None
    vipu_partition: str | None = None
    vipu_allocation: str | None = None
    vipu_server_host: str | None = None
    mpi_global_args: str | None = None
    mpi_local_args: str | None = None
    only_output_from_instance: int | None = None
    executable_cache_path: str | None = None
    offline_mode: str | None = None


# Options rendered after --num-instances, in this order; None leaves the flag out.
_FLAGS = (
    "num_replicas",
    "ipus_per_replica",
    "numa_aware",
    "host",
    "vipu_partition",
    "vipu_allocation",
    "vipu_server_host",
    "mpi_global_args",
    "mpi_local_args",
    "only_output_from_instance",
    "executable_cache_path",
    "offline_mode",
)


@register
class PoprunLauncher(InstanceLauncher):
    name = "poprun"
    failure_pattern = MPI_FAILURE
    options_type = PoprunOptions
    options: PoprunOptions

    def executable(self) -> str:
        return self.options.executable

    def command(self, workload_argv: list[str]) -> list[str]:
        argv = [self.options.executable, f"--num-instances={self.instances}"]
        for key in _FLAGS:
            value = getattr(self.options, key)
            if value is not None:
                argv.append(f"--{key.replace('_', '-')}={value}")
        return argv + list(workload_argv)

    def environment(self) -> dict[str, str]:
        return {"OMPI_MCA_orte_tag_output": "1"}
