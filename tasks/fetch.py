"""Fetch step: Prefect's view of getting the dataset archive and the initial weights.

A source is a local path, or a Google Drive file (`drive://ID` or a share link) downloaded into the content
cache under `<data_root>/cache/drive/`. The logic is plain Python in `tuneflow.fetch.archives`, `tuneflow.fetch.weights` and
`tuneflow.fetch.drive`; the tasks here add what only Prefect has: the run logger, a progress artifact, the retry policy
and a key kept in a Prefect Secret block. They are the pipeline's network edge, the only tasks that retry, and
only for failures that may pass (rate limits, outages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from tuneflow.fetch.archives import FetchedArchive, fetch_archive
from tuneflow.config import DriveSettings
from tuneflow.fetch.drive import (
    DownloadProgress,
    DriveCredentialsError,
    DriveTransientError,
    ProgressCallback,
    ServiceAccountKey,
    load_key_from_settings,
    load_service_account_key,
)
from tuneflow.fetch.weights import resolve_weights
from tuneflow.storage import DEFAULT_DATA_ROOT, DRIVE_CACHE
from tuneflow.tasks.dashboard import ArtifactKeys, ProgressBar, keys_of_run
from tuneflow.tasks.results import REUSED_ON_RETRY

# Task-level retries come on top of tuneflow.fetch.drive's own quick retries (about 8 s of backoff in all): they
# outlast a longer Drive outage, and a retried download resumes from the bytes already in the cache.
NETWORK_RETRY_DELAYS_S = [15, 60]


def load_drive_key(settings: DriveSettings) -> ServiceAccountKey:
    """The service-account key: from the Prefect Secret block if one is named, else the key file / environment."""
    if not settings.key_secret_block:
        return load_key_from_settings(settings)
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(settings.key_secret_block).get()
    except ValueError as error:  # Prefect's "Unable to find block document named ..."
        raise DriveCredentialsError(
            f"Prefect Secret block {settings.key_secret_block!r} could not be loaded ({error}); create it "
            "with the service-account key's JSON as its value (see docs/drive.md) or set "
            "drive.key_file instead"
        ) from None
    origin = f"Prefect Secret block {settings.key_secret_block!r}"
    return load_service_account_key(key_json=value, key_json_origin=origin)


def progress_artifact_updater(key: str) -> ProgressCallback:
    """A download progress callback that keeps a Prefect progress artifact up to date (once per percent); a failed
    update never fails the download."""
    bar = ProgressBar(key, f"download progress ({key})")
    last: dict[str, int | None] = {"percent": None}

    def update(progress: DownloadProgress) -> None:
        percent = int(100 * progress.fraction)
        if percent == last["percent"]:
            return
        last["percent"] = percent
        bar.update(percent, description=(
            f"Downloading {progress.title} (Drive file {progress.file_id}): {progress.bytes_done / 2**20:.1f} of "
            f"{progress.bytes_total / 2**20:.1f} MiB at {progress.bytes_per_s / 2**20:.1f} MiB/s"
        ))

    return update


def retry_only_transient_drive_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only Drive failures that may pass; a missing file or key never will."""
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(error, DriveTransientError)


@task(
    name="fetch-dataset",
    retries=len(NETWORK_RETRY_DELAYS_S),
    retry_delay_seconds=NETWORK_RETRY_DELAYS_S,
    retry_condition_fn=retry_only_transient_drive_errors,
    cache_policy=REUSED_ON_RETRY,
    persist_result=True,
)
def fetch_dataset(
    source: str, drive: DriveSettings | None = None, data_root: Path = DEFAULT_DATA_ROOT,
    keys: ArtifactKeys | None = None,
) -> FetchedArchive:
    """Locate the local dataset archive, or download the Drive one into the cache, and fingerprint it."""
    return fetch_archive(
        source,
        drive or DriveSettings(),
        Path(data_root) / DRIVE_CACHE,
        load_key=load_drive_key,
        on_progress=progress_artifact_updater(keys_of_run(keys).key("dataset-download")),
        logger=get_run_logger(),
    )


@task(
    name="fetch-weights",
    retries=len(NETWORK_RETRY_DELAYS_S),
    retry_delay_seconds=NETWORK_RETRY_DELAYS_S,
    retry_condition_fn=retry_only_transient_drive_errors,
    cache_policy=REUSED_ON_RETRY,
    persist_result=True,
)
def fetch_weights(
    weights: str, drive: DriveSettings | None = None, data_root: Path = DEFAULT_DATA_ROOT,
    keys: ArtifactKeys | None = None,
) -> Path | None:
    """Make the initial ResNet50 weights available locally (None: random initialisation)."""
    return resolve_weights(
        weights,
        drive,
        Path(data_root) / DRIVE_CACHE,
        load_key=load_drive_key,
        on_progress=progress_artifact_updater(keys_of_run(keys).key("weights-download")),
        logger=get_run_logger(),
    )
