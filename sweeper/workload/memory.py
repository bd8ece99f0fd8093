"""`workload.memory_limit_gb`: a real memory limit for one built-in job, so that a batch too
large fails, as it would on a device with less memory (the batch-size search finds the
largest that fits)."""

from __future__ import annotations

import os
import resource

import torch

from sweeper.process.memory_cgroup import CGROUP_ENV, join

GIB = 1 << 30


def limit_memory(limit_gb: float, device: torch.device) -> None:
    """CPU: the job's memory cgroup that the sweeper made (sweeper/process/memory_cgroup.py) is
    joined now, after start-up, so what the job takes beyond it counts; over the limit the
    kernel's OOM killer ends it. Where the sweeper could make none, the address space is
    capped at what the process maps now plus limit_gb (approximate: reserved mappings
    count), so an allocation beyond fails with torch's "DefaultCPUAllocator: can't allocate
    memory". CUDA: the caching allocator gets that share of the device
    (torch.OutOfMemoryError beyond it)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_gb * GIB / total), device)
        return
    # Start the intra-op thread pool first: its start-up is not the job's memory, and
    # thread stacks mapped under an address-space cap would fail.
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    cgroup = os.environ.get(CGROUP_ENV)
    if cgroup:
        join(cgroup)
        return
    limit = _mapped_bytes() + int(limit_gb * GIB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _mapped_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmSize")
