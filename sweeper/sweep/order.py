"""The order a sweep's jobs run in when each configuration is repeated (`repeats=N`)."""

from __future__ import annotations

import random


def repeat_order(count: int, repeats: int, seed: int | str) -> list[tuple[int, int]]:
    """(repeat, job index) in the order they run: every job once per round, rounds one
    after another (A B C, then C A B, not A A B B C C). The first round runs in the sweep's
    own order (the tables list configurations in it); every later round in an order of its
    own, shuffled by a seeded generator (randomized interleaved trials: drift, the
    neighbours' noise and any effect of the job before fall on every configuration alike,
    and no configuration always follows the same one). The same seed gives the same order,
    so a resumed sweep numbers its jobs as before."""
    order: list[tuple[int, int]] = [(0, k) for k in range(count)] if repeats else []
    for r in range(1, repeats):
        indices = list(range(count))
        random.Random(f"{seed}:{r}").shuffle(indices)
        order += [(r, k) for k in indices]
    return order


def with_repeats(jobs: list[list[str]], repeats: int, seed: int | str = 0) -> list[list[str]]:
    """Every job `repeats` times, in repeat_order (as they are when repeats is 1)."""
    if repeats <= 1:
        return jobs
    return [[*jobs[k], f"repeat={r}"] for r, k in repeat_order(len(jobs), repeats, seed)]
