"""A plain hand-written torchvision inference/training loop: the baseline the built-in
workload is compared with (same model, batch, threads, precision, layout, optimisation)."""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torchvision


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--freeze", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = torchvision.models.resnet50().eval().to(memory_format=torch.channels_last)
    x = torch.randn(args.batch_size, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        if args.freeze:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.jit.optimize_for_inference(
                    torch.jit.freeze(torch.jit.trace(model, x))
                )
        for _ in range(args.warmup):
            model(x)
        start = time.perf_counter()
        for _ in range(args.steps):
            model(x)
        seconds = time.perf_counter() - start
    print(f"{args.batch_size * args.steps / seconds:.4f}")


if __name__ == "__main__":
    main()
