"""What a sample costs and what the device can do, for the efficiency next to every figure.

Work per sample: torch's FLOP counter over one forward of the model at batch size 1 (three
times that to train: TRAIN_FACTOR), in floating-point operations (a multiply-add is 2).
The device's limit: a short probe, a 1x1 convolution (a matrix multiply run by the same
library as the model's layers: oneDNN on CPU, cuDNN on GPU) with the job's threads and
precision. torch.mm is not the measure on CPU: it runs in MKL, which reaches 40% of the
convolution's rate on AMD hosts. Both are kept in $XDG_CACHE_HOME/sweeper/work.json by
what they depend on, made once per machine (a probe per job cost every built-in job a
tenth of a second, seconds in half precision on a CPU). `sweeper limits --measure` probes
again and keeps the best figure the host has shown: a probe slowed by a neighbour never
lowers it.
"""

from __future__ import annotations

import json
import platform
import socket
import time
from collections.abc import Callable
from typing import Any

import torch

from sweeper.job.environment import cpu_model
from sweeper.result.files import write_json_atomic
from sweeper.workload.cache import cache_path

COUNTED = "torch.utils.flop_counter over one forward at {size}x{size}"
# Training: forward plus backward, counted as 3x the forward (the backward computes two
# products per layer: the inputs' and the weights' gradients). torch's counter itself
# overcounts grouped convolutions' backward (42x the forward for EfficientNet-B0).
TRAIN_FACTOR = 3
PROBE = "measured: 1x1 convolution probe, {dtype}, {threads} threads, {device}"


def _entries() -> dict[str, Any]:
    try:
        entries = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _store(entries: dict[str, Any]) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, entries)
    except OSError:
        pass  # a read-only home: counted again next time, nothing else lost


def _cached(key: str, compute: Any) -> tuple[float, bool]:
    """The cached value for key, or compute() stored under it; (value, was cached)."""
    entries = _entries()
    if isinstance(entries.get(key), int | float):
        return float(entries[key]), True
    value = float(compute())
    _store({**_entries(), key: value})  # read again: another instance may have added one
    return value, False


def flops_per_sample(
    build: Callable[[], torch.nn.Module],
    name: str,
    image_size: int,
    train: bool,
    variant: str = "",
    count_now: bool = True,
) -> tuple[float, str] | None:
    """FLOP per sample of the model `build` makes (a multiply-add is 2), built only when the
    count is not cached yet; and where the figure comes from."""
    from torch.utils.flop_counter import FlopCounterMode

    key = f"flops|{name}{variant}|{image_size}|forward|{torch.__version__}"

    def count() -> float:
        model = build().eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.randn(1, 3, image_size, image_size))
        return float(counter.get_total_flops())

    if not count_now and not isinstance(_entries().get(key), int | float):
        return None
    forward, _ = _cached(key, count)
    source = COUNTED.format(size=image_size)
    if train:
        return TRAIN_FACTOR * forward, f"{source}, x{TRAIN_FACTOR} to train"
    return forward, source


def _peak_key(device: torch.device, dtype: torch.dtype, threads: int) -> str:
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else cpu_model() or platform.machine()
    )
    return f"peak|{socket.gethostname()}|{name}|{dtype}|{threads}|{torch.__version__}"


def peak_flops(
    device: torch.device, dtype: torch.dtype, threads: int, probe_now: bool = True
) -> tuple[float, str] | None:
    """The device's FLOP/s for the model's kind of work, as measured on this host (probed
    now when it never was, unless probe_now is false); and how it was measured."""
    known = _entries().get(_peak_key(device, dtype, threads))
    if isinstance(known, int | float):
        value = float(known)
    elif probe_now:
        value = remeasure(device, dtype, threads)
    else:
        return None
    label = str(dtype).removeprefix("torch.")
    return value, PROBE.format(dtype=label, threads=threads, device=device.type)


def remeasure(device: torch.device, dtype: torch.dtype, threads: int) -> float:
    """Probes now and keeps the best figure the host has shown (`sweeper limits --measure`):
    a probe that ran beside another job measures less than the device can do, never more."""
    key = _peak_key(device, dtype, threads)
    best = max(_probe(device, dtype), float(_entries().get(key) or 0.0))
    _store({**_entries(), key: best})
    return best


def _probe(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    channels, side = 1024, 32
    batch = 64 if device.type == "cuda" else 4  # long enough to time on a GPU
    x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
    x = x.to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 1, bias=False).to(device=device, dtype=dtype)
    conv = conv.to(memory_format=torch.channels_last).eval()
    work = 2 * batch * side * side * channels * channels
    best = float("inf")
    with torch.inference_mode():
        conv(x)  # warm-up: the library picks its kernel
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - began)
    return work / best
