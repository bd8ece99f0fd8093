"""The built-in workload on CUDA (run by benchmarks/gpu_check.py on a GPU machine; skipped
elsewhere)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

from sweeper.parse.formats import workload_patterns  # noqa: E402
from sweeper.parse.logparse import parse_bytes  # noqa: E402
from sweeper.result.evaluate import MetricRules, evaluate  # noqa: E402
from sweeper.workload.loop import Settings, run  # noqa: E402


@pytest.mark.parametrize("precision", ["fp32", "16.32"])
@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("data", ["synthetic", "generated"])
def test_resnet50_on_cuda(capsys, precision, mode, data) -> None:
    run(
        Settings(
            model="resnet50",
            mode=mode,
            data=data,
            batch_size=16,
            interval_s=None,
            target_rel_ci=None,
            warmup_max_s=0.0,
            max_seconds=30.0,
            device="cuda",
            precision=precision,
            intervals=3,
            steps_per_interval=2,
        )
    )
    out = capsys.readouterr().out
    assert "device=cuda" in out
    parsed = parse_bytes(out.encode(), workload_patterns("builtin"))
    result = evaluate(parsed, MetricRules(drop_first=1, combine="sum"))
    assert result.status == "ok", out
    assert result.throughput is not None and result.throughput.mean > 50  # any GPU beats this
