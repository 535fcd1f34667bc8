"""Run-folder steps: whether an upload was already trained on, and which folder this run writes to.

Both are decided once per flow run and reused by its retries (tasks.results): a retry writes into the folder its
first attempt opened, next to the files that attempt's finished steps left there, and an upload-triggered run
retried after it stored its model version is not mistaken for a second run on the same upload.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tuneflow.records import RunSummary
from tuneflow.runs.folders import earlier_run_for_upload, open_run_dir
from tuneflow.tasks.results import REUSED_ON_RETRY


@task(name="find-earlier-run", cache_policy=REUSED_ON_RETRY, persist_result=True)
def find_earlier_run(data_root: Path, drive_file_id: str, drive_revision: str) -> RunSummary | None:
    """The run that already trained this Drive revision into a model version, if one did."""
    return earlier_run_for_upload(data_root, drive_file_id, drive_revision)


@task(name="open-run-folder", cache_policy=REUSED_ON_RETRY, persist_result=True)
def open_run(data_root: Path, resume_run_id: str | None, allow_ephemeral_data_root: bool) -> Path:
    """A new run folder, the interrupted one to resume, or the one this flow run's first attempt opened."""
    return open_run_dir(data_root, resume_run_id, allow_ephemeral_data_root)
