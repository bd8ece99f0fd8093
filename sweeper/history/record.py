"""The sweep's side of the history: its settings checked before any job starts, and its
results stored when it ends — on the submitting side only (a SLURM job never opens the
database). A history that cannot be used costs a sweep nothing: a warning, and its own files
stand."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.history.settings import HistorySettings
from sweeper.history.url import chosen_url, has_password, mask, redact


def settings_of(cfg: DictConfig) -> HistorySettings:
    node = cfg.get("history")
    if node is None:
        return HistorySettings(enabled=False)
    data: Any = OmegaConf.to_container(node, resolve=True)
    return HistorySettings(**data)


def problems(cfg: DictConfig) -> list[str]:
    settings = settings_of(cfg)
    if not settings.enabled:
        return []
    found = settings.problems()
    if has_password(settings.url):
        found.append(
            f"history.url ({mask(str(settings.url))}) holds a password, which the run's "
            ".hydra/ files would keep: give the URL without it and the password in "
            "PGPASSWORD or ~/.pgpass, or the whole URL in $SWEEPER_HISTORY_URL"
        )
    return found


def record(cfg: DictConfig, directory: Path) -> None:
    settings = settings_of(cfg)
    if not settings.enabled:
        return
    url = chosen_url(configured=settings.url)
    # Imported here: a sweep with the history off never loads SQLAlchemy.
    from sqlalchemy.exc import SQLAlchemyError

    from sweeper.history.ingest import ingest, result_files
    from sweeper.history.store import HistoryError, Store

    try:
        store = Store(url)
        try:
            _, added = ingest(store, result_files([directory]), list(settings.split))
        finally:
            store.close()
    except (HistoryError, SQLAlchemyError, OSError, ImportError, ValueError) as exc:
        why = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        print(
            f"warning: the results were not stored in the history ({mask(url)}): {why}; the "
            f"sweep's files stand: store them later with `python -m sweeper.collect history "
            f"ingest {directory}`",
            file=sys.stderr,
        )
        return
    print(f"history: {added} run(s) stored in {mask(url)}", file=sys.stderr)
