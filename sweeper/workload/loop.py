"""The measured loop: train or infer, timed per interval, one throughput line each.

Line format (docs: README "Built-in workload"), one per interval:
  [sweeper.workload] interval 2/6: samples_per_sec=17.316 latency_ms=231.00 samples=16 seconds=0.924
Training lines carry `loss=` instead of `latency_ms=`. Every value is followed by a space
and more text, so a line cut off mid-number is never read by the collector.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sweeper.launchers import RENDEZVOUS_ENV
from sweeper.process.cores import available_cores
from sweeper.workload import data as inputs
from sweeper.workload.measure import Plan, relative_half_width, run_interval, settle, stop_reason
from sweeper.workload.memory import limit_memory
from sweeper.workload.models import build_model
from sweeper.workload.settings import Settings

PREFIX = "[sweeper.workload]"


def measuring_plan(settings: Settings) -> Plan:
    """How long it measures, from its settings."""
    return Plan(
        intervals=settings.intervals,
        steps_per_interval=settings.steps_per_interval,
        interval_s=settings.interval_s,
        target_rel_ci=settings.target_rel_ci,
        min_intervals=settings.min_intervals,
        max_seconds=settings.max_seconds,
        drop_first=settings.drop_first,
        warmup_max_s=settings.warmup_max_s,
    )


@dataclass(frozen=True)
class Topology:
    """This process's place among the job's instances (torchrun or mpirun variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environment(cls) -> Topology:
        env = os.environ
        if "WORLD_SIZE" in env:
            return cls(
                int(env.get("RANK", 0)),
                int(env["WORLD_SIZE"]),
                int(env.get("LOCAL_RANK", 0)),
                int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
            )
        if "OMPI_COMM_WORLD_SIZE" in env:
            return cls(
                int(env["OMPI_COMM_WORLD_RANK"]),
                int(env["OMPI_COMM_WORLD_SIZE"]),
                int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)),
                int(env.get("OMPI_COMM_WORLD_LOCAL_SIZE", env["OMPI_COMM_WORLD_SIZE"])),
            )
        return cls()


def half_dtype(device: torch.device) -> torch.dtype:
    """The 16-bit type of the seed's precisions: fp16 on GPU, bf16 on CPU (fp16 on CPU is
    slow or unsupported in many kernels)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(settings: Settings, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """16.32: half-precision compute over float32 weights (autocast). 16.16 needs none: the
    weights and activations are half already (see half_weights)."""
    if settings.precision != "16.32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=half_dtype(device))


def half_weights(
    settings: Settings, model: nn.Module, batches: Iterator[inputs.Batch], device: torch.device
) -> tuple[nn.Module, Iterator[inputs.Batch]]:
    """16.16, as Graphcore's app means it: weights, activations and gradients in 16 bits."""
    if settings.precision != "16.16":
        return model, batches
    dtype = half_dtype(device)
    return model.to(dtype), ((images.to(dtype), labels) for images, labels in batches)


def choose_device(name: str, topology: Topology) -> torch.device:
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("system=gpu: CUDA is not available on this machine (use system=cpu)")
        return torch.device("cuda", topology.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def make_batches(settings: Settings, device: torch.device) -> Iterator[inputs.Batch]:
    args = (settings.batch_size, settings.image_size, device, settings.channels_last)
    if settings.data == "synthetic":
        return inputs.synthetic(*args)
    if settings.data == "generated":
        return inputs.generated(*args)
    if settings.data_dir is None:
        raise SystemExit("data=real needs --data-dir (DATASETS_DIR)")
    return inputs.real(
        Path(settings.data_dir),
        settings.data_format,
        settings.batch_size,
        settings.image_size,
        settings.mode == "train",
        settings.workers,
        device,
        settings.channels_last,
    )


def freeze_for_inference(
    model: nn.Module, example: torch.Tensor, settings: Settings, device: torch.device
) -> nn.Module:
    """A traced, frozen graph: batch norm folded into convolutions, oneDNN-fused kernels
    (ResNet-50 fp32 here: 24 img/s against 16 for the eager model)."""
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # TorchScript is deprecated, still fastest on CPU
        with torch.inference_mode(), autocast(settings, device):
            traced = torch.jit.trace(model, example)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))


def inference_step(
    settings: Settings, model: nn.Module, batches: Iterator[inputs.Batch], device: torch.device
) -> Callable[[], float]:
    model.eval()
    if settings.optimize in ("auto", "torchscript"):
        model = freeze_for_inference(model, next(batches)[0], settings, device)
    elif settings.optimize == "compile":
        model = torch.compile(model)  # type: ignore[assignment]

    def step() -> float:
        images, _ = next(batches)
        with torch.inference_mode(), autocast(settings, device):
            model(images)
        return math.nan

    return step


def init_process_group(dist: Any, backend: str, topology: Topology) -> None:
    """torchrun's rendezvous (MASTER_ADDR/PORT, env://), else the job's rendezvous file that
    the sweeper gives instances started by mpirun (launchers.RENDEZVOUS_ENV)."""
    if "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend)
        return
    path = os.environ.get(RENDEZVOUS_ENV)
    if not path:
        raise SystemExit(
            f"{topology.world_size} instances but no rendezvous: run them through the sweeper "
            "(launcher=torchrun or launcher=mpirun), or set MASTER_ADDR/MASTER_PORT"
        )
    dist.init_process_group(
        backend,
        init_method=f"file://{path}",
        rank=topology.rank,
        world_size=topology.world_size,
    )


def training_step(
    settings: Settings,
    model: nn.Module,
    batches: Iterator[inputs.Batch],
    device: torch.device,
    topology: Topology,
) -> Callable[[], float]:
    model.train()
    if topology.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if settings.optimize == "compile":
        model = torch.compile(model)  # type: ignore[assignment]
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    optimizer: torch.optim.Optimizer
    if settings.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(
            model.parameters(), lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5
        )
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    # Loss scaling for fp16 compute over float32 weights (GradScaler cannot unscale fp16
    # gradients: 16.16 trains without it, as bf16 does).
    scaler = torch.amp.GradScaler(
        device.type, enabled=settings.precision == "16.32" and device.type == "cuda"
    )
    accumulation = settings.gradient_accumulation
    last_loss = torch.zeros((), device=device)

    def step() -> float:
        nonlocal last_loss
        optimizer.zero_grad(set_to_none=True)
        for _ in range(accumulation):
            images, labels = next(batches)
            with autocast(settings, device):
                loss = criterion(model(images), labels) / accumulation
            scaler.scale(loss).backward()
            last_loss = loss.detach()
        scaler.step(optimizer)
        scaler.update()
        return math.nan

    def step_with_loss() -> float:
        step()
        return float(last_loss) * accumulation

    step_with_loss.plain = step  # type: ignore[attr-defined]
    return step_with_loss


def _barrier(topology: Topology) -> None:
    if topology.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(settings: Settings) -> None:
    topology = Topology.from_environment()
    threads = settings.threads or max(1, available_cores() // topology.local_world_size)
    torch.set_num_threads(threads)
    device = choose_device(settings.device, topology)
    torch.manual_seed(1234 + topology.rank)
    if topology.world_size > 1:
        # One group for DDP training, and for the barriers that keep instances in step.
        import torch.distributed as dist

        init_process_group(dist, "nccl" if device.type == "cuda" else "gloo", topology)
    # Before the memory limit: what they allocate is not the job's memory.
    work_lines = _work(settings, device, threads, topology)
    if settings.memory_limit_gb is not None:
        limit_memory(settings.memory_limit_gb, device)

    model = build_model(settings.model, settings.group_dim, settings.expand_ratio).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batches = make_batches(settings, device)
    model, batches = half_weights(settings, model, batches, device)
    weights = next(model.parameters()).dtype
    compute = half_dtype(device) if settings.precision != "fp32" else weights
    train = settings.mode == "train"
    step = (
        training_step(settings, model, batches, device, topology)
        if train
        else inference_step(settings, model, batches, device)
    )
    timed_step = getattr(step, "plain", step)
    samples_per_step = settings.batch_size * (settings.gradient_accumulation if train else 1)
    print(
        f"{PREFIX} model={settings.model} mode={settings.mode} data={settings.data} "
        f"batch_size={settings.batch_size} device={device} threads={threads} "
        f"precision={settings.precision} weights={str(weights).removeprefix('torch.')} "
        f"compute={str(compute).removeprefix('torch.')} "
        f"instance={topology.rank}/{topology.world_size}"
        + (" intervals=in-step" if topology.world_size > 1 else ""),
        flush=True,
    )
    for line in work_lines:
        print(line, flush=True)
    for _ in range(settings.warmup_steps):
        timed_step()
    _sync(device)
    _measure(step, timed_step, settings, device, topology, samples_per_step)
    if topology.world_size > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def _work(settings: Settings, device: torch.device, threads: int, topology: Topology) -> list[str]:
    """What a sample costs and what the instances' devices can do (sweeper/workload/work.py),
    as the lines that say it (rank 0 says it for every instance: they add up)."""
    from sweeper.workload import work

    # Under a memory limit only what is known already: counting and probing allocate, and
    # their memory (freed or kept by the allocator) would change what the limit measures.
    measure = settings.memory_limit_gb is None
    variant = f"|g{settings.group_dim}|e{settings.expand_ratio}"
    counted = work.flops_per_sample(
        lambda: build_model(settings.model, settings.group_dim, settings.expand_ratio),
        settings.model, settings.image_size, settings.mode == "train", variant, measure,
    )  # fmt: skip
    compute = half_dtype(device) if settings.precision != "fp32" else torch.float32
    measured = work.peak_flops(device, compute, threads, measure)
    if topology.rank != 0:
        return []
    lines = []
    if counted is not None:
        lines.append(f"{PREFIX} work: flops_per_sample={counted[0]:.6g} ({counted[1]})")
    if measured is not None:
        instances = f", x{topology.world_size} instances" if topology.world_size > 1 else ""
        peak = measured[0] * topology.world_size
        lines.append(f"{PREFIX} limit: peak_flops={peak:.6g} ({measured[1]}{instances})")
    return lines


def _measure(
    step: Callable[[], float],
    timed_step: Callable[[], Any],
    settings: Settings,
    device: torch.device,
    topology: Topology,
    samples_per_step: int,
) -> None:
    """Settles, then measures intervals until the plan says stop; a line per interval."""
    train = settings.mode == "train"
    distributed = topology.world_size > 1
    plan = measuring_plan(settings)
    settle(timed_step, lambda: _sync(device), plan, distributed)
    rates: list[float] = []
    began = time.perf_counter()
    interval, why = 0, None
    while why is None:
        interval += 1
        # Instances start every interval together, so that each one's rate is measured
        # while the others run too: their sum is the job's rate (none runs alone at the end).
        _barrier(topology)
        steps, seconds, loss = run_interval(
            step, timed_step, lambda: _sync(device), plan, distributed
        )
        samples = samples_per_step * steps
        rates.append(samples / seconds)
        figure = f"loss={loss:.4f}" if train else f"latency_ms={seconds / steps * 1000:.3f}"
        total = f"/{plan.intervals}" if plan.target_rel_ci is None else ""
        print(
            f"{PREFIX} interval {interval}{total}: samples_per_sec={rates[-1]:.3f} {figure} "
            f"samples={samples} seconds={seconds:.4f}",
            flush=True,
        )
        why = stop_reason(rates, interval, time.perf_counter() - began, plan, distributed)
    half = relative_half_width(rates, plan.drop_first)
    print(
        f"{PREFIX} measuring stopped ({why}) after {interval} intervals: 95% CI of this "
        f"instance's mean +-{half:.2%}"
        + (f" (target +-{plan.target_rel_ci:.2%})" if plan.target_rel_ci is not None else ""),
        flush=True,
    )
