"""Stand-in for Graphcore's TensorFlow CNN app (train.py / validation.py), for tests.

No IPU, no TensorFlow and no Graphcore SDK exist here, so this prints what the real app
prints (SDK 2.0-2.5 log lines, or SDK 2.6+ with STANDIN_SDK=2.6) from a simple model of its
throughput. Under poprun (POPDIST_* set, see tests/stand_ins/poprun) each instance prints the
*global* estimate, as the real app does. Standard library only: it runs under the system
`python3` exactly as the seed's command lines call it.

Faults by --batch-size, for the reliability tests:
  3 crash (exit 3)      5 hang          6 no metrics     7 NaN throughput
  9 SIGKILL mid-run     11 instance 1 fails (exit 4) under poprun
  13 prints 1 MB of noise before each step (a job whose output has no end)
STANDIN_HEAL=1 turns every fault off (the "fixed" rerun). STANDIN_STEP_S sets the seconds
per step (default 0.02; 0 makes a trivial workload for the orchestration benchmark), or per
batch size as B:S,... (`*:S` for the others): e.g. 8:0.5,*:0, only batch size 8 lasts.
STANDIN_RUN_LOG=<file> appends one JSON line per run with its argv and environment, so
tests can see what was launched.

A throughput curve with known answers, for the batch-size search:
  STANDIN_PEAK=P        img/s = 200 * b * exp(1 - b / P) per replica (b the batch size): its
                        maximum is at b = P exactly; per model: resnet=48,resnext=4 (--model)
  STANDIN_DIP=B:F       batch size B runs at F times the curve (real curves have dips)
  STANDIN_OOM_ABOVE=N   a batch size above N does not fit: Poplar's out-of-memory message,
                        then the process aborts (SIGABRT), as the real app does
  STANDIN_OOM_FLAKY=B   batch size B fits on its first try and runs out of memory on its
                        second (then third fits, ...): a memory boundary that is not
                        repeatable (tries counted in STANDIN_RUN_LOG)

Changes between runs, for the results history:
  STANDIN_SCALE=B:F,... batch size B runs at F times its rate (`*:F`: every batch size)
  STANDIN_NOISE=R:S     each run's rate off by up to R (relative), drawn from seed S and the
                        batch size: run-to-run spread that is reproducible
"""

import json
import math
import os
import random
import signal
import sys
import time


def _per_batch(spec, batch, default=0.0):
    """A number, or B:X,... by batch size (`*:X` for the others; else default)."""
    if ":" not in spec:
        return float(spec) if spec.strip() else default
    values = dict(item.split(":") for item in spec.split(",") if item)
    return float(values.get(str(batch), values.get("*", default)))


def _arg(argv, name, default=None):
    for i, token in enumerate(argv):
        if token == name and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return default


def _flaky_oom(log, batch):
    """STANDIN_OOM_FLAKY: out of memory on the even tries of that batch size (this run is
    already in the run log)."""
    flaky = os.environ.get("STANDIN_OOM_FLAKY")
    if not flaky or int(flaky) != batch or not log:
        return False
    with open(log) as f:
        tries = sum(1 for line in f if _arg(json.loads(line)["argv"], "--batch-size") == flaky)
    return tries % 2 == 0


def main(script):
    argv = sys.argv[1:]
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    log = os.environ.get("STANDIN_RUN_LOG")
    if log:
        with open(log, "a") as f:
            record = {
                "script": script,
                "argv": argv,
                "rank": rank,
                "cwd": os.getcwd(),
                "popdist": {k: v for k, v in os.environ.items() if k.startswith("POPDIST_")},
            }
            f.write(json.dumps(record) + "\n")
    batch = int(_arg(argv, "--batch-size", "1"))
    fault = None if os.environ.get("STANDIN_HEAL") == "1" else batch
    replicas = int(os.environ.get("POPDIST_NUM_TOTAL_REPLICAS", _arg(argv, "--replicas", "1")))
    accumulation = int(_arg(argv, "--gradient-accumulation-count", "1"))
    sdk26 = os.environ.get("STANDIN_SDK") == "2.6"
    step_s = _per_batch(os.environ.get("STANDIN_STEP_S", "0.02"), batch)
    steps = int(_arg(argv, "--repeat", "6")) if script == "validation.py" else 6

    print(f"Graphcore CNN stand-in: {script} batch {batch}, replicas {replicas}", flush=True)
    oom_above = os.environ.get("STANDIN_OOM_ABOVE")
    if (oom_above is not None and batch > int(oom_above)) or _flaky_oom(log, batch):
        print("Compiling graph...", flush=True)
        print(
            "terminate called after throwing an instance of "
            "'poplar::graph_memory_allocation_error'\n"
            "  what():  Out of memory on tile 7: 681900 bytes used but tiles only have "
            "638976 bytes of memory",
            file=sys.stderr,
            flush=True,
        )
        os.abort()
    rate = 200.0
    peaks = dict(
        item.split("=") if "=" in item else ("", item)
        for item in os.environ.get("STANDIN_PEAK", "").split(",")
        if item
    )
    peak = peaks.get(_arg(argv, "--model", ""), peaks.get(""))
    if peak:
        peak = float(peak)
        rate = 200.0 * math.exp(1 - batch / peak)
        dip_at, _, factor = os.environ.get("STANDIN_DIP", ":").partition(":")
        if dip_at and int(dip_at) == batch:
            rate *= float(factor)
    rate *= _per_batch(os.environ.get("STANDIN_SCALE", ""), batch, default=1.0)
    spread, _, seed = os.environ.get("STANDIN_NOISE", "0:0").partition(":")
    rate *= 1 + float(spread) * random.Random(f"{seed}:{batch}").uniform(-1, 1)
    if fault == 3:
        print("Traceback (most recent call last):\nRuntimeError: stand-in crash", file=sys.stderr)
        sys.exit(3)
    if fault == 5:
        time.sleep(3600)
    if fault == 11 and rank == 1:
        print("instance 1: poplar_error: stand-in IPU failure", file=sys.stderr, flush=True)
        sys.exit(4)
    if fault == 6:
        print("Finished, but printed no throughput.")
        return
    global_batch = batch * accumulation * replicas
    for step in range(1, steps + 1):
        if fault == 13:
            for _ in range(1024):
                print("x" * 1023)
        # The first step includes warm-up: much slower, as on the real system.
        img_s = global_batch * (20.0 if step == 1 else rate * (1 + ((step % 3) - 1) / 200))
        if fault == 7 and step == 3:
            img_s = float("nan")
        latency = global_batch / img_s * 1000 if img_s == img_s else float("nan")
        if script == "train.py":
            if sdk26:
                print(
                    f"epoch: {step / 100:.2f}, iteration: {step}, loss: 6.9, accuracy: 0.1%, "
                    f"throughput: {img_s:.2f} samples/sec, time: 0.1, total_time: {step}"
                )
            else:
                print(
                    f"step: {step}, iteration: {step * 10}, epoch: {step / 100:.2f}, "
                    f"lr: 0.256, loss: 6.91, top-1 accuracy: 0.1%, img/sec: {img_s:.2f}, "
                    f"time: 0.1, total_time: {step}"
                )
        elif sdk26:
            print(
                f"Validation iteration: {step}, accuracy: 0.1%, throughput: {img_s:.2f} "
                f"samples/sec, latency avg: {latency:.4f} ms, latency min: 1.0 ms)"
            )
        else:
            print(
                f"Validation top-1 accuracy [stand-in] (iteration: {step}, epoch: 1.0, "
                f"img/sec: {img_s:.2f}, time: 0.1, latency (ms): {latency:.4f}): 0.100%"
            )
        sys.stdout.flush()
        if fault == 9 and step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(step_s)
