"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, made to keep results.

Stock `submitit_slurm` waits on the jobs in order and raises at the first one that SLURM
cancelled or timed out (submitit #1775), losing every other job's result. This launcher
submits the same job array through submitit, waits for all of it, and hands SLURM's final
state for each job to the verdict (sweeper/result/verdict.py): a job SLURM ended is recorded
cancelled / timeout next to the others, whether or not it left a result.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import DictConfig, OmegaConf

from sweeper.checks.preflight import check_slurm
from sweeper.errors import UserError, first_line
from sweeper.process import interrupt
from sweeper.result import verdict
from sweeper.result.model import Result
from sweeper.sweep import slurm_chain
from sweeper.where import JobsRunner, SweepJob

log = logging.getLogger(__name__)
POLL_S = 2.0
# Final states in which SLURM, not the job, ended it; a result it wrote before is on the
# shared filesystem within RESULT_GRACE_S.
ENDED_BY_SLURM = ("CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")
RESULT_GRACE_S = 2


class SlurmJobLost(RuntimeError):
    """A SLURM job ended without a result: cancelled, timed out, node failure..."""

    def __init__(self, job_id: str, state: str, detail: str) -> None:
        self.job_id, self.state = job_id, state
        super().__init__(f"SLURM job {job_id} ended {state} without a result: {detail}")


class SlurmJobs(SlurmLauncher, JobsRunner):
    drives_on_slurm = True

    @classmethod
    def preflight(cls, launcher_config: DictConfig) -> list[str]:
        return check_slurm(launcher_config.get("partition"))

    def run_jobs(
        self, jobs: Sequence[SweepJob], first_num: int, sweep_size: int | None = None
    ) -> Sequence[JobReturn]:
        """One SLURM array; a refused submission is one clear message."""
        try:
            return self.launch([job.overrides for job in jobs], initial_job_idx=first_num)
        except Exception as exc:
            if type(exc).__name__ != "FailedJobError":  # submitit's, for a refused sbatch
                raise
            raise UserError(
                f"the scheduler refused the submission ({first_line(exc)}): none of the "
                f"{len(jobs)} job(s) was submitted; fix it and run the command again"
            ) from None

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """One array, waited for. A detached sweep's driver step (sweep/slurm_chain.py)
        waits for none: it takes the jobs its chain submitted before, and submits the
        others and leaves the rest of the sweep to the next step."""
        numbered = list(enumerate(job_overrides, start=initial_job_idx))
        chain = slurm_chain.current()
        jobs = self._submit(numbered) if chain is None else self._chain_jobs(chain, numbered)
        _wait_for_all(jobs)
        return [
            self._outcome(job, overrides)
            for job, (_, overrides) in zip(jobs, numbered, strict=False)
        ]

    def _chain_jobs(
        self, chain: slurm_chain.Chain, numbered: list[tuple[int, Sequence[str]]]
    ) -> list[Any]:
        """In a driver step: the jobs its chain submitted before. The others are submitted
        and ContinueLater raised (a cancelled sweep submits none: the jobs before them)."""
        taken = [chain.submitted(num, overrides) for num, overrides in numbered]
        new = [job for job, slurm_id in zip(numbered, taken, strict=True) if slurm_id is None]
        if new and interrupt.stop_requested():
            taken = taken[: taken.index(None)]
        elif new:
            submitted = self._submit(new)
            chain.add([(n, o, job.job_id) for (n, o), job in zip(new, submitted, strict=True)])
            if not interrupt.stop_requested():  # else they are cancelled, as they are waited for
                arrays = sorted({job.job_id.split("_")[0] for job in submitted})
                raise slurm_chain.ContinueLater(arrays, len(submitted))
            taken = [chain.submitted(num, overrides) for num, overrides in numbered]
        return [self._job(str(slurm_id)) for slurm_id in taken]

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            folder=params.pop("submitit_folder"),
            cluster="slurm",
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{key if key in shared else f"slurm_{key}": value for key, value in params.items()}
        )
        return executor

    def _job(self, slurm_id: str) -> Any:
        """A job submitted earlier (by an earlier step of the sweep's driver), by its id."""
        import submitit

        return submitit.SlurmJob(folder=self.params["submitit_folder"], job_id=slurm_id)

    def _submit(self, numbered: Sequence[tuple[int, Sequence[str]]]) -> list[Any]:
        assert self.config is not None
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        arguments: list[Any] = []
        for num, overrides in numbered:
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            arguments.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    num,
                    f"job_id_for_{num}",
                    Singleton.get_state(),
                )
            )
        jobs: list[Any] = self._executor().map_array(self, *zip(*arguments, strict=True))
        log.info(f"Submitted SLURM array {jobs[0].job_id.split('_')[0]} ({len(jobs)} jobs)")
        return jobs

    @staticmethod
    def _outcome(job: Any, overrides: Sequence[str]) -> JobReturn:
        state = None
        if not job.paths.result_pickle.exists():
            state = _final_state(job)
            if state.startswith(ENDED_BY_SLURM):
                # No result is on its way: submitit would wait 15 s for one (for a slow
                # shared filesystem), per job, so a cancelled sweep took minutes to report.
                job._results_timeout_s = RESULT_GRACE_S
        try:
            ret = job.results()[0]
        except Exception as exc:  # the job never returned: keep why, with SLURM's state
            ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
            ret._return_value = SlurmJobLost(
                job.job_id, state or _final_state(job), str(exc).splitlines()[0]
            )
            return ret
        # A job cancelled or timed out by SLURM may still have written its result (its
        # workload was killed): SLURM's final state says why.
        result = ret._return_value
        if (
            ret.status == JobStatus.COMPLETED
            and isinstance(result, Result)
            and verdict.after_scheduler(result, _final_state(job))
            and result.job_dir
        ):
            result.save()
        return ret


def _final_state(job: Any, patience_s: float = 15.0) -> str:
    """SLURM's final state for the job, asked afresh: submitit's cached state lags behind,
    and accounting may say RUNNING/COMPLETING for a moment after the job ended."""
    deadline = time.monotonic() + patience_s
    while True:
        state = str(job.get_info(mode="force").get("State", "UNKNOWN"))
        if not state.startswith(("RUNNING", "COMPLETING", "PENDING", "UNKNOWN")):
            return state
        if time.monotonic() > deadline:
            return state
        time.sleep(1.0)


def _wait_for_all(jobs: Sequence[Any]) -> None:
    """Until every job has ended. When the sweep is interrupted (Ctrl-C, SIGTERM), the jobs
    still queued or running are cancelled (scancel), as local jobs are stopped: a sweep
    never leaves work behind it; the report then shows them `cancelled`."""
    pending = list(jobs)
    cancelling = False
    while True:
        still = []
        for job in pending:
            if job.done():
                log.info(f"SLURM job {job.job_id} ended")
            else:
                still.append(job)
        pending = still
        if not pending:
            return
        if interrupt.stop_requested() and not cancelling:
            cancelling = True
            print(
                f"{interrupt.reason()}: cancelling {len(pending)} SLURM job(s) not yet ended "
                f"(scancel {' '.join(job.job_id for job in pending)})",
                file=sys.stderr,
                flush=True,
            )
            for job in pending:
                job.cancel(check=False)
        time.sleep(POLL_S)
