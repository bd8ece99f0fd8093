"""Generic OpenMPI launch: `mpirun -np N --tag-output <workload>` for workloads using MPI."""

from __future__ import annotations

from dataclasses import dataclass, field

from sweeper.launchers import (
    MPI_FAILURE,
    RENDEZVOUS_ENV,
    InstanceLauncher,
    LauncherOptions,
    register,
)


@dataclass
class MpirunOptions(LauncherOptions):
    executable: str = "mpirun"
    allow_run_as_root: bool = True
    oversubscribe: bool = True
    extra_args: list[str] = field(default_factory=list)


@register
class MpirunLauncher(InstanceLauncher):
    name = "mpirun"
    failure_pattern = MPI_FAILURE
    options_type = MpirunOptions
    options: MpirunOptions
    # OpenMPI sets each rank's OMPI_COMM_WORLD_* but no rendezvous for torch.distributed.
    needs_rendezvous = True

    def executable(self) -> str:
        return self.options.executable

    def command(self, workload_argv: list[str]) -> list[str]:
        argv = [self.resolve_executable() or self.options.executable]
        # -x: exported to every rank, on other nodes too.
        argv += ["-np", str(self.instances), "--tag-output", "-x", RENDEZVOUS_ENV]
        if self.options.allow_run_as_root:
            argv.append("--allow-run-as-root")
        if self.options.oversubscribe:
            argv.append("--oversubscribe")
        return argv + list(self.options.extra_args) + list(workload_argv)
