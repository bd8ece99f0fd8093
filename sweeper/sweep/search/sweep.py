"""The batch-size search's sweep: the cells (every combination of the other swept choices),
then rounds; each round launches the next probes of every cell in one launcher.launch() (one
SLURM array; one job after another locally). Each probe is an ordinary job with its job
directory and result.json; the report has every probe, and the search's answers besides."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sweeper.errors import UserError
from sweeper.history import record as history
from sweeper.process import interrupt
from sweeper.result.repeats import combine, combine_repeats
from sweeper.result.store import choices, fingerprint, read_result
from sweeper.sweep import benchmark as base
from sweeper.sweep.search.settings import SearchSettings
from sweeper.sweep.search.strategy import INCOMPLETE, SEARCHING, CellSearch, Probe

BATCH_SIZE = "batch_size"


class BatchSearch(base.BenchmarkSweep):
    def __init__(self, settings: SearchSettings, params: dict[str, str] | None = None) -> None:
        super().__init__(params)
        self.settings = settings

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None
        problems = self.settings.problems() + self._batch_size_given(arguments)
        if problems:
            raise UserError(problems)
        cells = self.job_overrides(arguments)
        str(self.config.hydra.sweep.dir)  # resolved once, shared by every job (see base)
        searches = [CellSearch(self.settings) for _ in cells]
        ladder = searches[0].ladder()
        first = [[*cell, f"{BATCH_SIZE}={b}"] for cell in cells for b in ladder]
        with base._composing():
            checked = self._compose_and_check(first)
        configs = [cfg for cfg, _ in checked]
        if any(cfg.dry_run for cfg in configs):
            for _, spec in checked:
                print(shlex.join(spec.argv), flush=True)
            print(
                f"dry run: the first round's {len(first)} job(s); later rounds depend on "
                "their results",
                file=sys.stderr,
            )
            base.last_outcome = base.SweepOutcome(Path("."), ["dry-run"] * len(configs))
            return []
        self._preflight(checked)
        sweep_dir, lock = self._open_sweep_dir(configs)
        try:
            return self._search(cells, searches, sweep_dir)
        finally:
            lock.release()

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
    def _search(
        self, cells: list[list[str]], searches: list[CellSearch], sweep_dir: Path
    ) -> list[Any]:
        results = self._resumed(cells, searches, sweep_dir)
        number = _next_job_number(sweep_dir)
        returns: list[Any] = []
        repeats = int(self.config.get("repeats", 1)) if self.config is not None else 1
        repeat_seed = int(self.config.get("repeat_seed", 0)) if self.config is not None else 0
        base._preload_report_libraries()
        for _ in range(self.settings.max_rounds):
            if interrupt.stop_requested():
                break
            probes = [
                (i, b) for i, search in enumerate(searches) for b in search.next_batch_sizes()
            ]
            if not probes:
                break
            seed = f"{repeat_seed}:{number}"
            jobs = base.with_repeats(
                [[*cells[i], f"{BATCH_SIZE}={b}"] for i, b in probes], repeats, seed
            )
            # Which probe each job of the round measures (repeats are shuffled).
            probe_of = [k for _, k in base.repeat_order(len(probes), repeats, seed)]
            with base._composing():
                configs = [cfg for cfg, _ in self._compose_and_check(jobs)]
            round_returns, round_results = self._launch(jobs, configs, sweep_dir, number)
            returns.append(round_returns)
            number += len(jobs)
            results += round_results
            for k, (i, _) in enumerate(probes):
                # A probe's repeats (one round holds every repeat) as one.
                mine = [r for r, p in zip(round_results, probe_of, strict=False) if p == k]
                if mine:
                    searches[i].add(Probe.from_result(combine(mine)))
            for i in {i for i, _ in probes}:
                searches[i].rounds += 1
        for search in searches:
            # Still wanting probes (a search that had all it needed has its status now).
            if search.status == SEARCHING and search.next_batch_sizes():
                search.status = INCOMPLETE
                search.reason = (
                    f"stopped: {interrupt.reason()}"
                    if interrupt.stop_requested()
                    else f"hydra.sweeper.max_rounds={self.settings.max_rounds} reached"
                )
        self._finish(cells, searches, results, sweep_dir)
        return returns

    def _resumed(
        self, cells: list[list[str]], searches: list[CellSearch], sweep_dir: Path
    ) -> list[dict[str, Any]]:
        """resume=true: the probes an earlier run of this search measured, each given to
        the cell whose config it measured (same fingerprint)."""
        assert self.config is not None
        if not self.config.get("resume"):
            return []
        found = []
        per_cell: list[list[dict[str, Any]]] = [[] for _ in cells]
        for job_dir in sorted(sweep_dir.iterdir(), key=lambda d: (len(d.name), d.name)):
            result = read_result(job_dir) if job_dir.name.isdigit() else None
            if not result or "fingerprint" not in result or BATCH_SIZE not in result:
                continue
            for i, cell in enumerate(cells):
                cfg = self.compose([*cell, f"{BATCH_SIZE}={result[BATCH_SIZE]}"])
                if fingerprint(cfg) == result["fingerprint"]:
                    per_cell[i].append(result)
                    found.append(result)
                    break
        for search, results in zip(searches, per_cell, strict=True):
            for probe in combine_repeats(results):  # a probe's repeats as one
                search.add(Probe.from_result(probe))
        if found:
            print(f"resuming the search: {len(found)} probe(s) measured before", file=sys.stderr)
        return found

    def _finish(
        self,
        cells: list[list[str]],
        searches: list[CellSearch],
        results: list[dict[str, Any]],
        sweep_dir: Path,
    ) -> None:
        from sweeper.collect import report
        from sweeper.sweep.search import report as search_report

        entries = [
            search_report.entry(self._cell_choices(cell), search)
            for cell, search in zip(cells, searches, strict=True)
        ]
        # How workload.memory_limit_gb was enforced (a cgroup, or the approximate cap).
        limits = [r["memory_limit"] for r in results if isinstance(r.get("memory_limit"), dict)]
        if limits:
            for entry in entries:
                entry["memory_limit"] = {k: limits[0][k] for k in ("gb", "mechanism")}
        try:
            if results:
                report.write_report(report.results_frame(results), sweep_dir)
            search_report.write(entries, sweep_dir)
        except OSError as exc:
            if interrupt.out_of_space(exc):
                interrupt.stop_for_disk(exc)
            print(
                f"error: the report was not written: {exc.strerror}: {exc.filename}",
                file=sys.stderr,
            )
        if results and self.config is not None:
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
        base.last_outcome = base.SweepOutcome(sweep_dir, [e["status"] for e in entries])
        if interrupt.stop_requested():
            base._print_interrupted([], sweep_dir)

    def _cell_choices(self, cell: list[str]) -> dict[str, Any]:
        """What tells the cell apart: its choices but the batch size."""
        cfg: DictConfig = self.compose([*cell, f"{BATCH_SIZE}={self.settings.lowest()}"])
        found = choices(cfg)
        found.pop(BATCH_SIZE, None)
        return found


def _next_job_number(sweep_dir: Path) -> int:
    """After every job directory there is (a resumed search's probes keep theirs)."""
    numbers = [int(d.name) for d in sweep_dir.iterdir() if d.name.isdigit()]
    return max(numbers, default=-1) + 1
