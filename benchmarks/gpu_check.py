"""GPU check, for a machine with one NVIDIA GPU (under five minutes; never needed by CI):
the tests marked `gpu`, then ResNet-50 and EfficientNet-B0 train and infer sweeps in fp32
and mixed precision (16.32: fp16 autocast), printed as one table with each figure's share
of the GPU's measured limit (the "% of peak" column: sweeper/result/efficiency.py).

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"], cwd=REPO
    )
    with tempfile.TemporaryDirectory() as tmp:
        sweep = subprocess.run(
            [
                sys.executable,
                "-m",
                "sweeper",
                "-m",
                "system=gpu",
                "model=resnet50,efficientnet_b0",
                "mode=train,infer",
                "precision=fp32,16.32",
                "batch_size=64",
                "workload.intervals=6",
                "workload.target_rel_ci=null",
                "workload.interval_s=null",
                "workload.warmup_max_s=0",
                "workload.steps_per_interval=10",
                f"hydra.sweep.dir={tmp}/gpu",
            ],
            cwd=REPO,
        )
        summary = Path(tmp) / "gpu" / "summary.md"
        if summary.exists():
            print(summary.read_text())
    return tests.returncode or sweep.returncode


if __name__ == "__main__":
    sys.exit(main())
