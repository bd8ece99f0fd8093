"""The built-in workload, for real: every model family in both modes and every data mode,
on this CPU, a couple of steps each, its output read by the collector."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from sweeper.parse.formats import workload_patterns  # noqa: E402
from sweeper.parse.logparse import parse_bytes  # noqa: E402
from sweeper.result.evaluate import MetricRules, evaluate  # noqa: E402
from sweeper.workload.loop import Settings, run  # noqa: E402
from sweeper.workload.models import build_model  # noqa: E402

BUILTIN = workload_patterns("builtin")
SMALL = 64  # image side for speed; the configs carry the real sizes (224, 380)


def run_and_parse(capsys, **overrides):
    # A fixed count of intervals (the measuring rule is tested in test_measurement.py).
    fixed = {"interval_s": None, "target_rel_ci": None, "warmup_max_s": 0.0, "max_seconds": 30.0}
    given = {"intervals": 3, "steps_per_interval": 1, "image_size": SMALL, "threads": 2}
    settings = Settings(**{**given, **fixed, **overrides})
    run(settings)
    out = capsys.readouterr().out
    parsed = parse_bytes(out.encode(), BUILTIN)
    return out, parsed, evaluate(parsed, MetricRules(drop_first=1, combine="sum"))


@pytest.mark.parametrize(
    ("name", "group_dim", "expand_ratio", "params_millions"),
    [
        ("resnet50", 1, 6, 25.6),
        ("resnext101", 1, 6, 44.2),  # 32x4d
        ("efficientnet_b0", 1, 6, 5.3),
        ("efficientnet_b4", 1, 6, 19.3),
        ("efficientnet_b4_g16", 16, 4, 19.3),
    ],
)
def test_models_have_the_seeds_architecture(name, group_dim, expand_ratio, params_millions) -> None:
    model = build_model(name, group_dim, expand_ratio).eval()
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert count == pytest.approx(params_millions, abs=0.15)
    with torch.inference_mode():
        assert model(torch.randn(2, 3, SMALL, SMALL)).shape == (2, 1000)


def test_g16_variant_uses_groups_of_16_and_expand_ratio_4() -> None:
    model = build_model("efficientnet_b4_g16", 16, 4)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert convs and all(c.in_channels // c.groups in (16, 8) for c in convs)
    assert sum(c.in_channels // c.groups == 16 for c in convs) > len(convs) * 0.9
    standard = build_model("efficientnet_b4", 1, 6)
    depthwise = [m for m in standard.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert all(c.groups == c.in_channels for c in depthwise)
    # expand ratio 4: the second stage's first expansion is 24 -> 96, not 24 -> 144.
    expand_conv = model.features[2][0].block[0][0]
    assert (expand_conv.in_channels, expand_conv.out_channels) == (24, 96)
    assert standard.features[2][0].block[0][0].out_channels == 144


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize(
    "model", ["resnet50", "resnext101", "efficientnet_b0", "efficientnet_b4_g16"]
)
def test_each_family_runs_in_both_modes(capsys, model, mode) -> None:
    extra = {"group_dim": 16, "expand_ratio": 4} if model.endswith("g16") else {}
    optimizer = "rmsprop" if model.startswith("efficientnet") else "sgd"
    out, parsed, result = run_and_parse(
        capsys, model=model, mode=mode, data="synthetic", batch_size=2, optimizer=optimizer, **extra
    )
    assert result.status == "ok", out
    assert len(parsed.throughput[0]) == 3 and result.throughput.n == 2
    if mode == "infer":
        assert len(parsed.latency_ms[0]) == 3
    else:
        losses = [
            float(line.split("loss=")[1].split()[0]) for line in out.splitlines() if "loss=" in line
        ]
        assert len(losses) == 3 and all(map(lambda v: v == v and abs(v) < 1e4, losses))


@pytest.mark.parametrize("data", ["synthetic", "generated"])
def test_data_made_on_device_and_on_host(capsys, data) -> None:
    _, _, result = run_and_parse(
        capsys,
        model="efficientnet_b0",
        mode="train",
        data=data,
        batch_size=2,
        optimizer="rmsprop",
        gradient_accumulation=2,
    )
    assert result.status == "ok"


def test_gradient_accumulation_counts_every_micro_batch(capsys) -> None:
    out, _, _ = run_and_parse(
        capsys,
        model="efficientnet_b0",
        mode="train",
        data="synthetic",
        batch_size=2,
        gradient_accumulation=3,
        steps_per_interval=2,
    )
    assert "samples=12 " in out


def test_eager_and_frozen_inference_agree() -> None:
    from sweeper.workload.loop import freeze_for_inference

    model = build_model("resnet50").eval()
    x = torch.randn(2, 3, SMALL, SMALL)
    with torch.inference_mode():
        expected = model(x)
    frozen = freeze_for_inference(
        model,
        x,
        Settings(model="resnet50", mode="infer", data="synthetic", batch_size=2),
        torch.device("cpu"),
    )
    with torch.inference_mode():
        assert torch.allclose(frozen(x), expected, rtol=1e-3, atol=1e-3)


def _jpeg(seed: int) -> bytes:
    import io

    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (80, 96, 3), dtype=torch.uint8, generator=generator)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> Path:
    """A tiny ImageNet in both layouts: TFRecord shards (as the seed requires) and folders."""
    from tfrecord.writer import TFRecordWriter

    root = tmp_path_factory.mktemp("imagenet")
    (root / "tfrecords").mkdir()
    for prefix in ("train", "validation"):
        for shard in range(2):
            writer = TFRecordWriter(str(root / "tfrecords" / f"{prefix}-{shard:05d}-of-00002"))
            for i in range(6):
                writer.write(
                    {
                        "image/encoded": (_jpeg(shard * 10 + i), "byte"),
                        "image/class/label": (random.randint(1, 1000), "int"),
                    }
                )
            writer.close()
    for split in ("train", "val"):
        for cls in ("n01440764", "n01443537"):
            folder = root / "folders" / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"{cls}_{i}.JPEG").write_bytes(_jpeg(i))
    return root


@pytest.mark.parametrize("layout", ["tfrecords", "folders"])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_real_data_in_both_layouts(capsys, tiny_imagenet, layout, mode) -> None:
    out, parsed, result = run_and_parse(
        capsys,
        model="efficientnet_b0",
        mode=mode,
        data="real",
        batch_size=4,
        data_dir=str(tiny_imagenet / layout),
        workers=2,
        optimizer="rmsprop",
    )
    assert result.status == "ok", out
    assert len(parsed.throughput[0]) == 3


def test_real_data_missing_names_what_was_expected(tmp_path) -> None:
    from sweeper.workload.data import find_real_data

    with pytest.raises(FileNotFoundError, match="train-\\*-of-\\* or an image folder"):
        find_real_data(tmp_path, train=True, fmt="auto")


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_16_16_is_half_weights_and_16_32_half_compute_over_float32(capsys, mode) -> None:
    """Two precisions, two computations (on CPU the 16-bit type is bf16)."""
    seen = {}
    for precision in ("fp32", "16.32", "16.16"):
        out, _, result = run_and_parse(
            capsys,
            model="efficientnet_b0",
            mode=mode,
            data="synthetic",
            batch_size=2,
            precision=precision,
        )
        assert result.status == "ok", out
        start = next(line for line in out.splitlines() if "weights=" in line)
        seen[precision] = (
            start.split("weights=")[1].split()[0],
            start.split("compute=")[1].split()[0],
        )
    assert seen == {
        "fp32": ("float32", "float32"),
        "16.32": ("float32", "bfloat16"),
        "16.16": ("bfloat16", "bfloat16"),
    }


def test_a_job_runs_with_the_defaults_the_readme_documents(tmp_path) -> None:
    """Every built-in setting's default, as README "CPU and GPU: the built-in workload" says
    it (`workload.<name>` (value)), is what a default job's command line gives the
    program."""
    import re
    import subprocess
    import sys
    from dataclasses import fields

    from sweeper.workload.__main__ import parse_args
    from sweeper.workload.settings import MeasureSettings
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### CPU and GPU") : readme.index("### Several instances")]
    documented = dict(re.findall(r"`workload\.(\w+)` \(([^)]+)\)", section.replace("\n", " ")))
    names = [f.name for f in fields(MeasureSettings)]
    assert sorted(documented) == sorted(names)
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper", "model=resnet50", "mode=infer", "dry_run=true"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,  # its run's files there
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split()
    settings = parse_args(argv[argv.index("sweeper.workload") + 1 :])
    for name in names:
        value = getattr(settings, name)
        text = documented[name].removesuffix(" s")
        expected = {"null": None, "true": True, "false": False}.get(text, text)
        if isinstance(value, int | float) and not isinstance(value, bool):
            expected = float(text)
        assert value == expected, (name, value, documented[name])
