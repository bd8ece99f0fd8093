"""Metric extraction from real log formats and the fault shapes seen in practice."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.parse.formats import workload_patterns
from sweeper.parse.logparse import (
    MAX_PARTIAL_BYTES,
    MetricExtractor,
    MetricPatterns,
    parse_in_parts,
    parse_stream,
    split_at_lines,
)
from sweeper.result.evaluate import MetricRules, evaluate
from sweeper.result.model import Result, Status
from sweeper.result.stats import combine_instances, summarize

GRAPHCORE = workload_patterns("graphcore")
BUILTIN = workload_patterns("builtin")
ALL = GRAPHCORE + BUILTIN


def parse(data: bytes, formats: list[MetricPatterns] = ALL, chunk: int | None = None):
    extractor = MetricExtractor(formats)
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        extractor.feed(data[i : i + step])
    return extractor.finish()


def sdk20_train(img_s: float, step: int = 1) -> str:
    return (
        f"step: {step}, iteration: {step * 10}, epoch: 0.01, lr: 0.256, loss: 6.91, "
        f"top-1 accuracy: 0.1%, img/sec: {img_s}, time: 0.123456, total_time: 12.3"
    )


def sdk20_validation(img_s: float, latency: float) -> str:
    return (
        f"Validation top-1 accuracy [resnet50] (iteration: 10, epoch: 1.0, img/sec: {img_s}, "
        f"time: 0.1, latency (ms): {latency}): 0.100%"
    )


def sdk26_train(value: float) -> str:
    return (
        f"epoch: 0.02, iteration: 20, loss: 6.9, accuracy: 0.1%, throughput: {value} "
        f"samples/sec, time: 0.2, total_time: 4.1"
    )


def sdk26_validation(value: float, latency: float) -> str:
    return (
        f"Validation [resnet50] iteration: 10, accuracy: 0.1%, throughput: {value} "
        f"samples/sec, latency avg: {latency} ms, latency min: 1.0 ms)"
    )


def builtin_line(value: float, latency: float) -> str:
    return (
        f"[sweeper.workload] interval 2/6: samples_per_sec={value} latency_ms={latency} "
        f"samples=16 seconds=0.9"
    )


def lines(*items: str) -> bytes:
    return ("\n".join(items) + "\n").encode()


@pytest.mark.parametrize(
    ("log", "fmt", "throughput", "latency"),
    [
        (
            lines(sdk20_train(100.5, 1), sdk20_train(1000.25, 2), sdk20_train(1002.75, 3)),
            "graphcore_sdk2.0",
            [100.5, 1000.25, 1002.75],
            [],
        ),
        (
            lines(sdk20_validation(50.0, 20.0), sdk20_validation(400.0, 2.5)),
            "graphcore_sdk2.0",
            [50.0, 400.0],
            [20.0, 2.5],
        ),
        (lines(sdk26_train(88.0), sdk26_train(900.0)), "graphcore_sdk2.6", [88.0, 900.0], []),
        (
            lines(sdk26_validation(60.0, 16.0), sdk26_validation(640.0, 1.5)),
            "graphcore_sdk2.6",
            [60.0, 640.0],
            [16.0, 1.5],
        ),
        (
            lines(builtin_line(13.3, 300.8), builtin_line(18.9, 211.5)),
            "builtin",
            [13.3, 18.9],
            [300.8, 211.5],
        ),
    ],
    ids=["sdk2.0-train", "sdk2.0-validation", "sdk2.6-train", "sdk2.6-validation", "builtin"],
)
def test_each_real_format_is_detected_and_read(log, fmt, throughput, latency) -> None:
    parsed = parse(b"Compiling graph...\nsome other line: 12.5\n" + log)
    assert parsed.format == fmt
    assert parsed.throughput == {0: throughput}
    assert parsed.latency_ms == ({0: latency} if latency else {})


def four_instance_log() -> bytes:
    """poprun-style tagged output: 4 instances, each printing the global estimate; the lines
    of different instances interleave, and instance 3 starts late."""
    values = {
        0: [10.0, 400.0, 404.0],
        1: [12.0, 396.0, 400.0],
        2: [11.0, 402.0, 398.0],
        3: [9.0, 390.0, 410.0],
    }
    order = [
        (0, 0),
        (1, 0),
        (0, 1),
        (2, 0),
        (1, 1),
        (0, 2),
        (2, 1),
        (1, 2),
        (3, 0),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    out = [b"poprun: launching 4 instances\n"]
    for rank, i in order:
        out.append(f"[1,{rank}]<stdout>:{sdk20_train(values[rank][i], i + 1)}\n".encode())
    return b"".join(out)


def test_four_instances_drop_the_first_value_of_each_then_average() -> None:
    parsed = parse(four_instance_log(), GRAPHCORE)
    assert parsed.tagged and parsed.instances() == [0, 1, 2, 3]
    result = evaluate(parsed, MetricRules(drop_first=1, combine="mean"))
    expected = (400 + 404 + 396 + 400 + 402 + 398 + 390 + 410) / 8
    assert result.status == "ok"
    assert result.throughput is not None
    assert result.throughput.mean == pytest.approx(expected)
    # Two measured iterations (each the mean of the four instances' estimates).
    assert result.throughput.n == 2 and result.throughput.dropped == 1
    # Dropping only the first value of the whole log, or summing, gives other figures.
    everything = [v for vs in parsed.throughput.values() for v in vs]
    in_log_order_first_dropped = sum(everything) - 10.0
    assert in_log_order_first_dropped / 11 != pytest.approx(expected)
    summed = evaluate(parsed, MetricRules(drop_first=1, combine="sum"))
    assert summed.throughput is not None
    assert summed.throughput.mean == pytest.approx(4 * expected)


def test_local_rates_are_summed_iteration_by_iteration() -> None:
    per_instance = {0: [1.0, 10.0, 12.0, 14.0], 1: [2.0, 20.0, 22.0]}
    series, dropped = combine_instances(per_instance, 1, "sum")
    assert series == [30.0, 34.0]  # instance 1 reached only two measured iterations
    assert dropped == 1  # one iteration, of every instance


def test_global_estimates_are_averaged_per_iteration_not_pooled() -> None:
    """Under poprun every instance prints the same global estimate: 4 instances x 10 lines
    are 9 measurements after the dropped first, not 36 (which would narrow the interval)."""
    estimates = [20.0, 398.0, 402.0, 396.0, 404.0, 400.0, 397.0, 403.0, 399.0, 401.0]
    per_instance = {rank: list(estimates) for rank in range(4)}
    series, dropped = combine_instances(per_instance, 1, "mean")
    assert series == estimates[1:] and dropped == 1
    summary = summarize(series, dropped)
    assert summary.n == 9
    # t(8) = 2.306; the sample std of the 9 values is 2.7386
    assert summary.ci95_high - summary.mean == pytest.approx(2.306 * 2.7386 / 3, rel=1e-3)


def test_a_line_split_by_another_instances_tag_is_reassembled() -> None:
    # What OpenMPI really prints when an instance writes part of a line (see NOTES §3).
    log = (
        b"[1,0]<stdout>:step: 2, img/sec: 5[1,1]<stdout>:" + sdk20_train(7.5).encode() + b"\n"
        b"[1,0]<stdout>:12.5, time: 0.1\n"
        b"[1,1]<stdout>:" + sdk20_train(8.5).encode() + b"\n"
    )
    parsed = parse(log, GRAPHCORE)
    assert parsed.throughput == {0: [512.5], 1: [7.5, 8.5]}


@pytest.mark.parametrize(
    "log",
    [
        # An untagged line (starting with "[") inside, and a tag in the middle of a line.
        b"[1,0]<stdout>:" + sdk20_train(1.0).encode() + b"\n"
        b"[x] step: 1, img/sec: 99.0, time: 0.1\n"
        b"[1,1]<stdout>:step: 2, img/sec: 5[1,2]<stdout>:" + sdk20_train(3.0).encode() + b"\n"
        b"[1,1]<stdout>:00.5, time: 0.1\n",
        # Untagged lines before the first tag, one without its line end.
        b"poprun: starting\n" + b"partial [1,0]<stdout>:" + sdk20_train(2.0).encode() + b"\n",
        # Twelve instances: two-digit ranks.
        b"".join(
            f"[1,{rank}]<stdout>:".encode() + sdk20_train(float(rank)).encode() + b"\n"
            for rank in [*range(12), *range(12)]
        ),
        b"[default0]:" + builtin_line(1.0, 9.0).encode() + b"\r\n"
        b"[default1]:" + builtin_line(2.0, 8.0).encode() + b"\r\n",
    ],
    ids=["untagged-and-cut-lines", "untagged-head", "twelve-instances", "torchrun-crlf"],
)
def test_whole_line_blocks_read_as_the_demultiplexer_reads_them(log: bytes) -> None:
    """Blocks whose tagged lines are whole are grouped by instance in one step (the fast
    path); every other block goes through the demultiplexer. Both read the same values: a
    line sink forces the demultiplexer."""
    fast = MetricExtractor(ALL)
    fast.feed(log)
    demultiplexed = MetricExtractor(ALL, line_sink=lambda rank, block: None)
    demultiplexed.feed(log)
    assert fast.finish() == demultiplexed.finish()
    assert fast.result.throughput


def test_torchrun_tags_are_instances_too() -> None:
    log = (
        b"[default0]:" + builtin_line(1.0, 9.0).encode() + b"\n"
        b"[default1]:" + builtin_line(2.0, 8.0).encode() + b"\n"
    )
    assert parse(log, BUILTIN).throughput == {0: [1.0], 1: [2.0]}


def test_crlf_and_progress_bar_carriage_returns() -> None:
    log = (
        b"Epoch 1: 10%|#    |\rEpoch 1: 50%|#####|\r" + sdk20_train(10.0).encode() + b"\r\n"
        b"progress 99%\r" + sdk20_train(20.0).encode() + b"\r\n"
    )
    assert parse(log, GRAPHCORE).throughput == {0: [10.0, 20.0]}


def test_bytes_that_are_not_utf8_do_not_stop_parsing() -> None:
    log = (
        b"\xff\xfe garbage \x80\x81\n"
        + lines(sdk26_train(1.5))
        + b"caf\xe9\n"
        + lines(sdk26_train(2.5))
    )
    assert parse(log, GRAPHCORE).throughput == {0: [1.5, 2.5]}


def test_a_truncated_last_line_is_not_read() -> None:
    # The writer was killed after "img/sec: 12" of "img/sec: 1234.5, ...".
    log = lines(sdk20_train(100.0), sdk20_train(1000.0)) + b"step: 3, img/sec: 12"
    assert parse(log, GRAPHCORE).throughput == {0: [100.0, 1000.0]}
    # Even a complete-looking number is not read without its line end.
    log = lines(sdk20_train(100.0)) + sdk20_train(1000.0).encode()
    assert parse(log, GRAPHCORE).throughput == {0: [100.0]}


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_results_do_not_depend_on_how_the_stream_is_chunked(chunk: int) -> None:
    log = four_instance_log() + b"[1,2]<stdout>:partial img/sec: 9" + b"[1,0]<stdout>:x\n"
    whole = parse(log, GRAPHCORE)
    assert parse(log, GRAPHCORE, chunk=chunk).throughput == whole.throughput


def _every_kind_of_line(copies: int) -> bytes:
    """Tagged lines whole and cut by another instance's tag, torchrun's and untagged lines,
    CRLF and progress bars, a validation line with its latency, a truncated end."""
    block = (
        four_instance_log()
        + b"[1,0]<stdout>:step: 2, img/sec: 5[1,1]<stdout>:" + sdk20_train(7.5).encode() + b"\n"
        + b"[1,0]<stdout>:12.5, time: 0.1\n"
        + b"[1,2]<stderr>:Compiling 50%\rCompiling 100%\r\n"
        + b"[1,3]<stdout>:" + sdk20_validation(3.0, 2.5).encode() + b"\r\n"
        + b"poprun: instance 3 still running\n"
    )  # fmt: skip
    return block * copies + b"[1,1]<stdout>:step: 9, img/sec: 12"


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_a_file_read_in_parts_gives_what_one_reading_gives(tmp_path: Path, parts: int) -> None:
    """Large files are read in parts by forked workers (logparse.parse_file); joined, the
    parts give exactly one reading's values, or None (then the file is read whole) where a
    part's end leaves an instance's line open."""
    path = tmp_path / "poprun.log"
    path.write_bytes(_every_kind_of_line(200))
    with open(path, "rb") as stream:
        whole = parse_stream(stream, ALL)
    assert whole.latency_ms and len(whole.throughput) == 4
    ranges = split_at_lines(path, parts)
    assert len(ranges) == parts and ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    joined = parse_in_parts(path, ALL, ranges)
    assert joined is None or joined == whole
    # Parts that end with whole lines only (the two-instance lines are never cut there).
    clean = tmp_path / "clean.log"
    clean.write_bytes(four_instance_log() * 300)
    with open(clean, "rb") as stream:
        assert parse_in_parts(clean, ALL, split_at_lines(clean, parts)) == parse_stream(stream, ALL)


def test_a_part_that_ends_inside_an_instances_line_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "cut.log"
    cut = b"[1,0]<stdout>:step: 2, img/sec: 5[1,1]<stdout>:" + sdk20_train(7.5).encode() + b"\n"
    path.write_bytes(cut + b"[1,0]<stdout>:12.5, time: 0.1\n")
    assert parse_in_parts(path, GRAPHCORE, split_at_lines(path, 2)) is None


def test_memory_stays_bounded_on_a_line_that_never_ends() -> None:
    extractor = MetricExtractor(GRAPHCORE)
    for _ in range(200):
        extractor.feed(b"#" * 10_000)  # a progress bar with no line end, 2 MB
    assert len(extractor.carry) <= MAX_PARTIAL_BYTES
    extractor.feed(b"\n" + lines(sdk20_train(3.0)))
    assert extractor.finish().throughput == {0: [3.0]}


def test_nan_makes_the_run_invalid_with_a_reason() -> None:
    parsed = parse(
        lines(sdk20_train(10.0), sdk20_train(float("nan")), sdk20_train(12.0)), GRAPHCORE
    )
    result = evaluate(parsed, MetricRules())
    assert result.status == "invalid"
    assert result.reason is not None and "nan" in result.reason


def test_inf_makes_the_run_invalid() -> None:
    parsed = parse(lines(sdk26_train(1.0), sdk26_train(float("inf"))), GRAPHCORE)
    assert evaluate(parsed, MetricRules()).status == "invalid"


def test_no_values_is_no_metrics() -> None:
    result = evaluate(parse(b"Traceback: something\n", ALL), MetricRules())
    assert result.status == "no-metrics"
    assert result.throughput is None


def test_only_the_dropped_value_is_no_metrics() -> None:
    result = evaluate(parse(lines(sdk20_train(10.0)), GRAPHCORE), MetricRules(drop_first=1))
    assert result.status == "no-metrics"
    assert "none left after dropping" in (result.reason or "")


def test_a_missing_instance_is_named() -> None:
    log = (
        b"[1,0]<stdout>:"
        + sdk20_train(1.0).encode()
        + b"\n[1,0]<stdout>:"
        + sdk20_train(2.0).encode()
        + b"\n"
    )
    result = evaluate(parse(log, GRAPHCORE), MetricRules(), expected_instances=2)
    assert result.status == "no-metrics" and "[1]" in (result.reason or "")


def test_unstable_values_are_flagged() -> None:
    parsed = parse(lines(*(sdk20_train(v) for v in (1, 100, 50, 150, 60, 140))), GRAPHCORE)
    result = evaluate(parsed, MetricRules(unstable_cv=0.10))
    assert result.status == "ok" and result.unstable
    steady = parse(lines(*(sdk20_train(v) for v in (1, 100, 101, 99, 100))), GRAPHCORE)
    assert not evaluate(steady, MetricRules(unstable_cv=0.10)).unstable


def test_a_sound_figure_short_of_its_target_is_wide_not_unstable() -> None:
    """CV 1%: trustworthy, but its interval (about ±1.6%) is wider than a ±0.5% target."""
    steady = parse(lines(*(sdk20_train(v) for v in (1, 100, 101, 99, 100, 98))), GRAPHCORE)
    result = evaluate(steady, MetricRules(unstable_cv=0.10, target_rel_ci=0.005))
    assert result.status == "ok" and result.wide and not result.unstable
    assert result.reason is not None and result.reason.startswith("wide: 95% interval ±")
    assert "did not reach the target ±0.5%" in result.reason
    loose = evaluate(steady, MetricRules(unstable_cv=0.10, target_rel_ci=0.05))
    assert not loose.wide and loose.reason is None
    noisy = parse(lines(*(sdk20_train(v) for v in (1, 100, 50, 150, 60, 140))), GRAPHCORE)
    both = evaluate(noisy, MetricRules(unstable_cv=0.10, target_rel_ci=0.005))
    assert both.unstable and both.wide
    assert both.reason is not None and both.reason.startswith("unstable: coefficient of")
    assert "; wide: 95% interval" in both.reason


def test_an_overlap_is_named_under_unstable_before_the_wide_part() -> None:
    result = Result(status=Status.OK, reason="wide: 95% interval ±3.0% ...", wide=True)
    result.mark_unstable("measured while job 1 ran")
    assert result.unstable and result.marks == "unstable, wide"
    assert result.reason == "unstable: measured while job 1 ran; wide: 95% interval ±3.0% ..."
    result.mark_unstable("another")
    assert result.reason == (
        "unstable: measured while job 1 ran; another; wide: 95% interval ±3.0% ..."
    )
    failed = Result(status=Status.FAILED, reason="exit code 1")
    failed.mark_unstable("x")
    assert failed.reason == "exit code 1; unstable: x"


def test_statistics_match_a_hand_computation() -> None:
    summary = summarize([10.0, 12.0, 14.0], dropped=1)
    assert summary.mean == 12.0 and summary.median == 12.0 and summary.std == 2.0
    half = 4.302653 * 2.0 / math.sqrt(3)  # t(0.975, 2 dof), to 7 digits (scipy)
    assert summary.ci95_low == pytest.approx(12.0 - half)
    assert summary.ci95_high == pytest.approx(12.0 + half)
    assert summary.cv == pytest.approx(2.0 / 12.0)


def test_a_regex_without_a_value_group_is_refused() -> None:
    with pytest.raises(ValueError, match="named value"):
        MetricPatterns.compile("bad", r"img/sec: ([\d.]+)", None)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.collect", *args], capture_output=True, text=True
    )


def test_cli_parse_prints_json_and_exit_status(tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_bytes(four_instance_log())
    proc = run_cli("parse", str(good))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "ok" and out["instances"] == 4
    assert out["throughput"]["mean"] == pytest.approx(400.0)
    assert out["throughput"]["n"] == 2 and out["throughput"]["dropped"] == 1
    assert out["latency_ms"] is None

    bad = tmp_path / "bad.log"
    bad.write_bytes(b"nothing here\n")
    proc = run_cli("parse", str(bad))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "no-metrics"


def test_a_value_that_is_not_a_number_is_counted_not_read() -> None:
    log = lines(sdk20_train(10.0), "step: 2, img/sec: 1.2.3, time: 0.1", sdk20_train(30.0))
    parsed = parse(log, GRAPHCORE)
    assert parsed.throughput == {0: [10.0, 30.0]}
    assert parsed.unparseable_values == 1
