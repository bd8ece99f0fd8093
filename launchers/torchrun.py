"""torchrun: N processes of the built-in workload on this machine (or in one allocation).

Training instances form one DDP group (the workload picks gloo on CPU, NCCL on GPU);
inference instances run independently and each reports its own rate. With one instance the
workload runs directly: torchrun would only add its start-up time to every job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sweeper.launchers import InstanceLauncher, LauncherOptions, register


@dataclass
class TorchrunOptions(LauncherOptions):
    executable: str = "torchrun"
    master_port: int = 0


@register
class TorchrunLauncher(InstanceLauncher):
    name = "torchrun"
    options_type = TorchrunOptions
    # torchrun's failure summary: "rank      : 1 (local_rank: 1)"
    failure_pattern = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank")
    options: TorchrunOptions

    def executable(self) -> str | None:
        return self.options.executable if self.instances > 1 else None

    def command(self, workload_argv: list[str]) -> list[str]:
        if self.instances == 1:
            return list(workload_argv)
        return [
            self.resolve_executable() or self.options.executable,
            "--nnodes=1",
            f"--nproc-per-node={self.instances}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=localhost:{self.options.master_port}",
            # Prefix each line with [default<rank>]: so the collector splits instances.
            "--tee=3",
            "--no-python",
            *workload_argv,
        ]
