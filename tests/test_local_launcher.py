"""`hydra/launcher=local` (the default) runs jobs from the sweep's composed configs; what
it leaves on disk must be what Hydra's own basic launcher leaves for the same sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import GRAPHCORE_APP, REPO, read_csv_rows, run_sweeper

SWEEP = [
    "-m",
    "model=resnet50,resnext101",  # a group change ...
    "system=ipu_m2000",
    "mode=infer",
    "data=synthetic",
    "batch_size=1,2",  # ... and value changes
    "extra_args=[--a-flag]",
]


def run(tmp_path: Path, name: str, *extra: str) -> Path:
    sweep = tmp_path / name
    proc = run_sweeper(
        *SWEEP,
        *extra,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"GRAPHCORE_CNN_APP_DIR": str(GRAPHCORE_APP), "STANDIN_STEP_S": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    return sweep


def normalized_hydra(path: Path, sweep: Path) -> dict[str, Any]:
    """hydra.yaml without what differs by construction: the launcher chosen, its paths."""
    node = yaml.safe_load(path.read_text().replace(str(sweep), "<sweep>"))["hydra"]
    node.pop("launcher")
    node["runtime"]["choices"].pop("hydra/launcher")
    node["overrides"]["hydra"] = [
        o for o in node["overrides"]["hydra"] if not o.startswith("hydra/launcher=")
    ]
    return dict(node)


def test_job_directories_match_hydras_basic_launcher(tmp_path: Path) -> None:
    ours = run(tmp_path, "local")
    stock = run(tmp_path, "basic", "hydra/launcher=basic")
    jobs = sorted(p.name for p in ours.iterdir() if p.is_dir())
    assert jobs == sorted(p.name for p in stock.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    for job in jobs:
        for name in ("config.yaml", "overrides.yaml"):
            mine = (ours / job / ".hydra" / name).read_bytes()
            assert mine == (stock / job / ".hydra" / name).read_bytes(), (job, name)
        assert normalized_hydra(ours / job / ".hydra" / "hydra.yaml", ours) == normalized_hydra(
            stock / job / ".hydra" / "hydra.yaml", stock
        )
        # Hydra's per-job log file, and the job's own files.
        for name in ("__main__.log", "result.json", "stdout.log"):
            assert (ours / job / name).exists() and (stock / job / name).exists()
    assert (ours / "multirun.yaml").exists()

    def rows(sweep: Path) -> list[tuple[str, str, str]]:
        return [
            (r["model"], r["batch_size"], r["status"]) for r in read_csv_rows(sweep / "results.csv")
        ]

    assert rows(ours) == rows(stock)
    assert {status for *_, status in rows(ours)} == {"ok"}


def test_hydras_job_callbacks_get_each_jobs_config_and_its_task_copy(tmp_path: Path) -> None:
    # The task's copy of a job's config (JobReturn.cfg) is made only where something reads
    # it: here a job callback, which must see each job's own, without Hydra's node.
    record = tmp_path / "callbacks.jsonl"
    proc = run_sweeper(
        *SWEEP,
        "+hydra.callbacks.record._target_=tests.job_callback.RecordJobEnd",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env={
            "GRAPHCORE_CNN_APP_DIR": str(GRAPHCORE_APP),
            "STANDIN_STEP_S": "0",
            "JOB_CALLBACK_FILE": str(record),
            "PYTHONPATH": str(REPO),
        },
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(j["config"]["model"]["name"], j["config"]["batch_size"]) for j in lines] == [
        ("resnet50", 1),
        ("resnet50", 2),
        ("resnext101", 1),
        ("resnext101", 2),
    ]
    for job in lines:
        whole = dict(job["config"])
        assert whole.pop("hydra")["job"]["num"] in range(4)
        assert job["task_cfg"] == whole


def test_every_job_shares_one_sweep_directory(tmp_path: Path) -> None:
    # ${now:...} resolved once for the sweep, not once per job (to the microsecond here).
    proc = run_sweeper(
        *SWEEP,
        "hydra.sweep.dir=outputs/${now:%H-%M-%S-%f}",
        cwd=tmp_path,
        env={"GRAPHCORE_CNN_APP_DIR": str(GRAPHCORE_APP), "STANDIN_STEP_S": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    # Progress, one plain line per job outside a terminal.
    assert proc.stderr.count(": ok ") == 4
    assert "[job 3 of 4] workload=graphcore model=resnext101" in proc.stderr
    # One sweep directory (beside it: the history database the sweep stored its runs in).
    (sweep,) = (p for p in (tmp_path / "outputs").iterdir() if p.is_dir())
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]


def test_jobs_that_change_directory_still_land_in_the_sweep(tmp_path: Path) -> None:
    # hydra.job.chdir=true: the next job is prepared while this one runs inside its own
    # directory; a relative sweep directory must still be taken from where the sweep started.
    proc = run_sweeper(
        *SWEEP,
        "hydra.job.chdir=true",
        "hydra.sweep.dir=relative",
        cwd=tmp_path,
        env={"GRAPHCORE_CNN_APP_DIR": str(GRAPHCORE_APP), "STANDIN_STEP_S": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "relative"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    for job in ("0", "1", "2", "3"):
        assert (sweep / job / "result.json").exists() and (sweep / job / ".hydra").is_dir()


def test_configs_are_written_as_omegaconf_writes_them(tmp_path: Path) -> None:
    """multirun.yaml and the .hydra/ files, through libyaml: OmegaConf.save's bytes, strings
    that read as other types, unicode, long and multi-line strings and interpolations among
    them."""
    from omegaconf import OmegaConf

    from sweeper.config import yaml_text

    config = OmegaConf.create(
        {
            "strings": ["true", "1", "1.5e3", "null", "~", "x: y", "- z", "héllo ✓", "${a.b}"],
            "long": "word " * 40,
            "lines": "first\nsecond line\n",
            "values": {"int": 3, "float": 0.25, "none": None, "flag": False, "empty": {}},
            "nested": {"list": [[1, 2], {"k": "v"}], "empty_list": []},
        }
    )
    yaml_text.save(config, tmp_path / "ours.yaml")
    OmegaConf.save(config, tmp_path / "omegaconf.yaml")
    assert (tmp_path / "ours.yaml").read_bytes() == (tmp_path / "omegaconf.yaml").read_bytes()
