"""Run folders: every run writes only under <data_root>/runs/<run id>/, and no two runs share one; a resumed run
must find the archive it was prepared from; an upload already trained on is not trained on again."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.atomic_files import write_text_atomically
from tuneflow.training.model import MODEL_FILE
from tuneflow.registry.versions import current_version, models_dir, read_version_record, version_trained_on
from tuneflow.records import RunSummary
from tuneflow.storage import RUNS_FOLDER, check_data_root_persists

# The archive a run was prepared from (FetchedArchive as JSON): a resumed run must find the same bytes.
RUN_ARCHIVE_FILE = "archive.json"


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


class ArchiveChangedError(RuntimeError):
    """A resumed run's source now holds different bytes from the archive the run was prepared from."""


def check_archive_of_run(run_dir: Path, archive: FetchedArchive) -> None:
    """Record the archive a run trains on (archive.json); on resume, refuse an archive that has changed since.

    A resumed run reuses its prepared split and checkpoints. Had Drive's file changed in between (a new upload),
    the run would record the new archive's MD5 and revision while its model learned from the old photos, and the
    report would describe data the model never saw.
    """
    record = run_dir / RUN_ARCHIVE_FILE
    if record.is_file():
        before = FetchedArchive.model_validate_json(record.read_text())
        if before.md5 != archive.md5:
            raise ArchiveChangedError(
                f"run {run_dir.name} was prepared from {describe_archive(before)}, but its source now holds "
                f"{describe_archive(archive)}: resuming would train on the old photos while recording the new "
                "archive. Start a new run for the new archive (without resume_run_id / --resume-run-id)"
            )
        return
    write_text_atomically(record, archive.model_dump_json(indent=2) + "\n")


def describe_archive(archive: FetchedArchive) -> str:
    revision = f", Drive revision {archive.drive_revision}" if archive.drive_revision else ""
    return f"{archive.source} with MD5 {archive.md5}{revision}"


def earlier_run_for_upload(data_root: Path, drive_file_id: str, drive_revision: str) -> RunSummary | None:
    """The summary of the model version already trained on this Drive upload, or None if there is none yet.

    The sensor asks for one run per upload under an idempotency key the server keeps with the run; a run deleted
    from the server takes its key with it, and the sensor may then ask again. The model registry remembers for
    good: every version records the Drive file and revision it trained on.
    """
    version = version_trained_on(data_root, drive_file_id, drive_revision)
    if version is None:
        return None
    record = read_version_record(data_root, version)
    run_dir = Path(record.get("run_dir") or Path(data_root) / RUNS_FOLDER / version)
    config_file = run_dir / "config.json"
    weights = json.loads(config_file.read_text())["training"]["weights"] if config_file.is_file() else "unknown"
    in_use = current_version(data_root)
    return RunSummary(
        run_dir=run_dir,
        accuracy=float(record.get("accuracy", 0.0)),
        model_path=models_dir(data_root) / version / MODEL_FILE,
        report_path=run_dir / "report.md",
        html_report_path=run_dir / "report.html",
        weights=weights,
        model_version=version,
        promoted=in_use == version,
        promotion_reason=(
            f"Drive file {drive_file_id} revision {drive_revision} was already trained into model version "
            f"{version}, which is {'the model in use' if in_use == version else f'kept; {in_use} is in use'}; "
            "this run trained nothing (upload-triggered runs train each revision once; scheduled and manual runs "
            "always train)"
        ),
        current_version=in_use,
        already_trained=True,
    )
