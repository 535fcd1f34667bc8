"""Run folders: every run writes only under <data_root>/runs/<run id>/, and no two runs share one."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

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
