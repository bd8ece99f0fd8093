"""The batch-size search's sweep: the cells (every combination of the other swept choices),
then rounds; each round launches the next probes of every cell in one launch (one SLURM
array; one job after another locally). Each probe is an ordinary job with its job directory
and result.json; the report has every probe, and the search's answers besides.

It reuses the benchmark sweep's steps (sweeper/sweep/benchmark.py) and overrides
`run_sweep` and `finish`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeper.config import default_data
from sweeper.errors import UserError
from sweeper.job.identity import choices, fingerprint
from sweeper.job.outcome import outcome
from sweeper.process import interrupt
from sweeper.result.model import JobDir, Result, Status
from sweeper.result.repeats import combine, combine_repeats
from sweeper.sweep import finish, slurm_chain
from sweeper.sweep.benchmark import BenchmarkSweep
from sweeper.sweep.order import repeat_order, with_repeats
from sweeper.sweep.search.settings import SearchSettings
from sweeper.sweep.search.strategy import ANSWERED, INCOMPLETE, SEARCHING, CellSearch, Probe

BATCH_SIZE = "batch_size"


class BatchSearch(BenchmarkSweep):
    def __init__(self, settings: SearchSettings, params: dict[str, str] | None = None) -> None:
        super().__init__(params)
        self.settings = settings
        self.cells: list[list[str]] = []
        self.searches: list[CellSearch] = []

    def run_sweep(self, arguments: list[str]) -> Any:
        finish.stop_report_worker()  # the search writes its report itself (see _search)
        problems = self.settings.problems() + self._batch_size_given(arguments)
        if problems:
            raise UserError(problems)
        self.cells = [self._with_default_data(cell) for cell in self.job_overrides(arguments)]
        self.searches = [CellSearch(self.settings) for _ in self.cells]
        ladder = self.searches[0].ladder()
        first = [[*cell, f"{BATCH_SIZE}={b}"] for cell in self.cells for b in ladder]
        checked = self.checked_jobs(first)
        if self.dry_run_or_check(checked):
            print(
                f"dry run: the first round's {len(first)} job(s); later rounds depend on "
                "their results",
                file=sys.stderr,
            )
            outcome.report([Status.DRY_RUN] * len(checked), succeeded=True)
            return []
        sweep_dir, lock = self.open_sweep_dir(checked)
        if self.detached(sweep_dir, lock, len(checked)):
            return []
        return self.holding(lock, sweep_dir, lambda: self._search(sweep_dir))

    def _batch_size_given(self, arguments: list[str]) -> list[str]:
        given = [
            a
            for a in [*(f"{k}={v}" for k, v in self.params.items()), *arguments]
            if a.lstrip("+~").split("=", 1)[0] == BATCH_SIZE
        ]
        if not given:
            return []
        return [
            f"{given[0]}: hydra/sweeper=batch_search chooses the batch size itself; leave "
            "batch_size out (bound the search with hydra.sweeper.min= and hydra.sweeper.max=)"
        ]

    # -- the rounds ----------------------------------------------------------------------
    def _search(self, sweep_dir: Path) -> list[Any]:
        # A detached search's later driver steps replay its rounds from the same number
        # (sweeper/sweep/slurm_chain.py), with what was measured before it began.
        number = slurm_chain.first_job_number(lambda: _next_job_number(sweep_dir))
        results = self._resumed(sweep_dir, before=number)
        returns: list[Any] = []
        finish.preload_report_libraries()
        for _ in range(self.settings.max_rounds):
            if interrupt.stop_requested() and not slurm_chain.submitted_before(number):
                break
            probes = [
                (i, b) for i, search in enumerate(self.searches) for b in search.next_batch_sizes()
            ]
            if not probes:
                break
            round_returns, round_results, launched = self._round(probes, sweep_dir, number)
            returns.append(round_returns)
            number += launched
            results += round_results
        for search in self.searches:
            # Still wanting probes (a search that had all it needed has its status now).
            if search.status == SEARCHING and search.next_batch_sizes():
                search.status = INCOMPLETE
                search.reason = (
                    f"stopped: {interrupt.reason()}"
                    if interrupt.stop_requested()
                    else f"hydra.sweeper.max_rounds={self.settings.max_rounds} reached"
                )
        self.finish(results, [], sweep_dir)
        return returns

    def _round(
        self, probes: list[tuple[int, int]], sweep_dir: Path, number: int
    ) -> tuple[Any, list[Result], int]:
        """One round: every probe (cell, batch size) launched together, its repeats
        shuffled; each cell given what its probes measured (a probe's repeats as one)."""
        assert self.config is not None
        repeats = int(self.config.get("repeats", 1))
        seed = f"{int(self.config.get('repeat_seed', 0))}:{number}"
        jobs = with_repeats(
            [[*self.cells[i], f"{BATCH_SIZE}={b}"] for i, b in probes], repeats, seed
        )
        # Which probe each job of the round measures (repeats are shuffled).
        probe_of = [k for _, k in repeat_order(len(probes), repeats, seed)]
        returns, results = self.launch(self.checked_jobs(jobs), sweep_dir, number)
        for k, (i, _) in enumerate(probes):
            mine = [r for r, p in zip(results, probe_of, strict=False) if p == k]
            if mine:
                self.searches[i].add(Probe.from_result(combine(mine)))
        for i in {i for i, _ in probes}:
            self.searches[i].rounds += 1
        return returns, results, len(jobs)

    def _resumed(self, sweep_dir: Path, before: int) -> list[Result]:
        """resume=true: the probes an earlier run of this search measured (jobs numbered
        before `before`), each given to the cell whose config it measured (same
        fingerprint)."""
        assert self.config is not None
        if not self.config.get("resume"):
            return []
        found = []
        per_cell: list[list[Result]] = [[] for _ in self.cells]
        for path in sorted(sweep_dir.iterdir(), key=lambda d: (len(d.name), d.name)):
            earlier = path.name.isdigit() and int(path.name) < before
            result = JobDir(path).read_result() if earlier else None
            if result is None or not result.fingerprint or BATCH_SIZE not in result.choices:
                continue
            for i, cell in enumerate(self.cells):
                cfg = self.compose([*cell, f"{BATCH_SIZE}={result.choices[BATCH_SIZE]}"])
                if fingerprint(cfg) == result.fingerprint:
                    per_cell[i].append(result)
                    found.append(result)
                    break
        for search, results in zip(self.searches, per_cell, strict=True):
            for probe in combine_repeats(results):  # a probe's repeats as one
                search.add(Probe.from_result(probe))
        if found:
            print(f"resuming the search: {len(found)} probe(s) measured before", file=sys.stderr)
        return found

    def finish(
        self, results: list[Result], not_run: list[tuple[int, list[str]]], sweep_dir: Path
    ) -> None:
        """Every probe in the report and the history; the search's answers besides."""
        finish.preloaded()
        from sweeper.collect import report
        from sweeper.history import record as history
        from sweeper.sweep.search import report as search_report

        assert self.config is not None
        entries = [
            search_report.entry(self._cell_choices(cell), search)
            for cell, search in zip(self.cells, self.searches, strict=True)
        ]
        # How workload.memory_limit_gb was enforced (a cgroup, or the approximate cap).
        limits = [r.details["memory_limit"] for r in results if "memory_limit" in r.details]
        if limits:
            for entry in entries:
                entry["memory_limit"] = {k: limits[0][k] for k in ("gb", "mechanism")}
        if results:
            finish.record_overlaps(results)
            finish.report_files(
                lambda: report.write_report(report.results_frame(results), sweep_dir)
            )
        finish.report_files(lambda: search_report.write(entries, sweep_dir))
        if results:
            history.record(self.config, sweep_dir)
        search_report.print_answers(entries)
        print(
            f"search: {sweep_dir / 'search.json'}; every probe: {sweep_dir / 'results.csv'}",
            file=sys.stderr,
        )
        for entry in entries:
            if entry["status"] != "ok":
                print(
                    f"  {search_report.label(entry)}: {entry['status']}: {entry['reason']}",
                    file=sys.stderr,
                )
        statuses = [e["status"] for e in entries]
        outcome.report(statuses, succeeded=all(s in ANSWERED for s in statuses))
        if interrupt.stop_requested():
            finish.print_interrupted([], sweep_dir)

    def _with_default_data(self, cell: list[str]) -> list[str]:
        """The cell with its workload's default data for its mode, when it chose none
        (sweeper/config/default_data.py): every probe, label and resume match then agree."""
        try:
            cfg = self.compose([*cell, f"{BATCH_SIZE}={self.settings.lowest()}"])
        except (HydraException, OmegaConfBaseException):
            return cell  # the checks that follow say what is wrong with it
        data = default_data.override_for(cfg, cell)
        return [*cell, data] if data else cell

    def _cell_choices(self, cell: list[str]) -> dict[str, Any]:
        """What tells the cell apart: its choices but the batch size (those its workload
        uses), and the units of its figures."""
        cfg: DictConfig = self.compose([*cell, f"{BATCH_SIZE}={self.settings.lowest()}"])
        found = {k: v for k, v in choices(cfg).items() if v is not None and k != BATCH_SIZE}
        found["unit"] = str(cfg.workload.metrics.unit)
        found["latency_unit"] = str(cfg.workload.metrics.latency_unit)
        return found


def _next_job_number(sweep_dir: Path) -> int:
    """After every job directory there is (a resumed search's probes keep theirs)."""
    numbers = [int(d.name) for d in sweep_dir.iterdir() if d.name.isdigit()]
    return max(numbers, default=-1) + 1
