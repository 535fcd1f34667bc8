"""Run folders: every run writes only under <data_root>/runs/<run id>/, and no two runs share one."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

from tuneflow.storage import check_data_root_persists

RUNS_FOLDER = "runs"


def new_run_id() -> str:
    """Sortable by start time, unique through its random suffix."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def create_run_dir(data_root: Path) -> Path:
    """Create a fresh run folder; mkdir without exist_ok guarantees two runs never write into the same one."""
    runs = Path(data_root) / RUNS_FOLDER
    runs.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = runs / new_run_id()
        try:
            run_dir.mkdir()
            return run_dir.resolve()
        except FileExistsError:
            continue


def open_run_dir(data_root: Path, resume_run_id: str | None, allow_ephemeral_data_root: bool = False) -> Path:
    """The folder of an interrupted run to continue, or a fresh one, under a data_root that will outlive the run."""
    check_data_root_persists(data_root, allow_ephemeral_data_root)
    if resume_run_id is None:
        return create_run_dir(data_root)
    run_dir = Path(data_root) / RUNS_FOLDER / resume_run_id
    if not run_dir.is_dir():
        existing = sorted(p.name for p in (Path(data_root) / RUNS_FOLDER).glob("*") if p.is_dir())[-5:]
        raise FileNotFoundError(
            f"no run folder {str(run_dir)!r} to resume; recent runs under {data_root}/{RUNS_FOLDER}: {existing}"
        )
    return run_dir.resolve()
