"""Fetch step: turn the configured source into a local dataset archive, recording where it came from.

A source is a local path, or a Google Drive file (`drive://ID` or a share link) downloaded into the content
cache under `<data_root>/cache/`. The Drive logic is plain Python in `tuneflow.drive`; the tasks here only wire
it to the config, the Prefect logger, a progress artifact and the retry policy. They are the pipeline's
network edge, the only tasks that retry, and only for failures that may pass (rate limits, outages).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel

from tuneflow.checksums import md5_of_file
from tuneflow.config import DriveSettings
from tuneflow.dataset.archive import describe_non_zip
from tuneflow.drive import (
    CachedDownload,
    DownloadProgress,
    DriveCredentialsError,
    DriveTransientError,
    Logger,
    ProgressCallback,
    RetryPolicy,
    ServiceAccountKey,
    connect_drive,
    fetch_to_cache,
    load_service_account_key,
)
from tuneflow.sources import parse_drive_source

DRIVE_CACHE_FOLDER = "cache"
DATASET_PROGRESS_KEY = "drive-dataset-download"
WEIGHTS_PROGRESS_KEY = "drive-weights-download"
# Task-level retries come on top of tuneflow.drive's own quick retries (about 8 s of backoff in all): they
# outlast a longer Drive outage, and a retried download resumes from the bytes already in the cache.
NETWORK_RETRY_DELAYS_S = [15, 60]


class FetchedArchive(BaseModel):
    """A dataset archive on local disk and its provenance, recorded with every model trained on it."""

    path: Path
    source: str
    md5: str
    size_bytes: int
    drive_file_id: str | None = None
    drive_revision: str | None = None


def locate_local_archive(source: str) -> FetchedArchive:
    """Check that a local source is a readable zip archive and fingerprint it."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"dataset archive {str(path)!r} does not exist; give the path of a dataset.zip "
            "(e.g. `tuneflow sample data/sample/dataset.zip` makes one)"
        )
    if path.is_dir():
        raise IsADirectoryError(
            f"source {str(path)!r} is a folder; zip it first (`cd PARENT && zip -r dataset.zip FOLDER`) "
            "and give the .zip path"
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"source {str(path)!r} is {describe_non_zip(path)}; give a .zip made with e.g. "
            "`zip -r dataset.zip dataset/`"
        )
    path = path.resolve()
    return FetchedArchive(path=path, source=source, md5=md5_of_file(path), size_bytes=path.stat().st_size)


# ------------------------------------------------------------------------------------------------------------
# Google Drive
# ------------------------------------------------------------------------------------------------------------


def load_drive_key(settings: DriveSettings) -> ServiceAccountKey:
    """The service-account key: from the Prefect Secret block if one is named, else the key file / environment."""
    if settings.key_secret_block:
        from prefect.blocks.system import Secret

        try:
            value = Secret.load(settings.key_secret_block).get()
        except ValueError as error:  # Prefect's "Unable to find block document named ..."
            raise DriveCredentialsError(
                f"Prefect Secret block {settings.key_secret_block!r} could not be loaded ({error}); create it "
                "with the service-account key's JSON as its value (see README, Google Drive) or set "
                "drive.key_file instead"
            ) from None
        origin = f"Prefect Secret block {settings.key_secret_block!r}"
        return load_service_account_key(key_json=value, key_json_origin=origin)
    return load_service_account_key(settings.key_file)


def download_from_drive(
    file_id: str,
    settings: DriveSettings,
    cache_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    logger: Logger | None = None,
) -> CachedDownload:
    """A verified copy of the Drive file's current revision in the content cache (downloaded only if new)."""
    logger = logger or logging.getLogger(__name__)
    key = load_drive_key(settings)
    drive = connect_drive(key, http_timeout_s=settings.http_timeout_s, api_endpoint=settings.api_endpoint)
    options = dict(
        chunk_bytes=settings.chunk_mib * 1024 * 1024,
        retry=RetryPolicy(max_retries=settings.max_retries, base_delay_s=settings.retry_base_delay_s),
        on_progress=on_progress,
        logger=logger,
    )
    cached = fetch_to_cache(drive, file_id, cache_dir, **options)
    if not cached.downloaded and md5_of_file(cached.path) != cached.file.md5:
        # Verified when it was downloaded, so something changed it on disk since: fetch a clean copy.
        logger.warning("cached %s no longer matches Drive's MD5 %s; downloading it again", cached.path, cached.file.md5)
        cached.path.unlink()
        cached = fetch_to_cache(drive, file_id, cache_dir, **options)
    return cached


def fetch_drive_archive(
    source: str,
    file_id: str,
    settings: DriveSettings,
    cache_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    logger: Logger | None = None,
) -> FetchedArchive:
    """Download (or reuse) the Drive dataset archive and record its file ID, revision and MD5."""
    cached = download_from_drive(file_id, settings, cache_dir, on_progress=on_progress, logger=logger)
    if not zipfile.is_zipfile(cached.path):
        raise ValueError(
            f"Drive file {file_id!r} ({cached.file.title!r}, {cached.file.mime_type}) is not a zip archive; "
            "upload the dataset as a .zip made with e.g. `zip -r dataset.zip dataset/`"
        )
    return FetchedArchive(
        path=cached.path.resolve(),
        source=source,
        md5=str(cached.file.md5),
        size_bytes=cached.path.stat().st_size,
        drive_file_id=cached.file.id,
        drive_revision=cached.file.revision,
    )


def progress_artifact_updater(key: str) -> ProgressCallback:
    """A download progress callback that keeps a Prefect progress artifact up to date (once per percent)."""
    state: dict[str, Any] = {"id": None, "percent": None}

    def update(progress: DownloadProgress) -> None:
        percent = int(100 * progress.fraction)
        if percent == state["percent"]:
            return
        state["percent"] = percent
        description = (
            f"Downloading {progress.title} (Drive file {progress.file_id}): {progress.bytes_done / 2**20:.1f} of "
            f"{progress.bytes_total / 2**20:.1f} MiB at {progress.bytes_per_s / 2**20:.1f} MiB/s"
        )
        if state["id"] is None:
            state["id"] = create_progress_artifact(progress=percent, key=key, description=description)
        else:
            update_progress_artifact(state["id"], percent, description=description)

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
)
def fetch_dataset(source: str, drive: DriveSettings | None = None, data_root: Path = Path("data")) -> FetchedArchive:
    """Locate the local dataset archive, or download the Drive one into the cache, and fingerprint it."""
    file_id = parse_drive_source(source)
    if file_id is None:
        return locate_local_archive(source)
    return fetch_drive_archive(
        source,
        file_id,
        drive or DriveSettings(),
        Path(data_root) / DRIVE_CACHE_FOLDER,
        on_progress=progress_artifact_updater(DATASET_PROGRESS_KEY),
        logger=get_run_logger(),
    )


# Keras' own ResNet50 "notop" weights: the file and checksum keras.applications.ResNet50(weights="imagenet") uses.
IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{IMAGENET_NOTOP_FILE}"
IMAGENET_NOTOP_MD5 = "4d473c1dd8becc155b73f8504c6f6626"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could not be downloaded; the message names the alternatives."""


def download_imagenet_weights() -> Path:
    """Keras' ImageNet weights for ResNet50 without its top, from the Keras cache (KERAS_HOME) or downloaded."""
    import keras

    try:
        return Path(
            keras.utils.get_file(
                IMAGENET_NOTOP_FILE, IMAGENET_NOTOP_URL, cache_subdir="models", file_hash=IMAGENET_NOTOP_MD5
            )
        )
    except Exception as error:  # Keras raises a bare Exception("URL fetch failure ...") when offline
        raise WeightsUnavailableError(
            f"could not get the ImageNet weights for ResNet50 from {IMAGENET_NOTOP_URL} ({error}). "
            "Either train from random initialisation with weights='none', or download that file where the "
            f"internet is reachable and give its path as weights=/path/to/{IMAGENET_NOTOP_FILE} (or copy it "
            "into ~/.keras/models/)."
        ) from error


def resolve_weights(
    weights: str,
    drive: DriveSettings | None = None,
    cache_dir: Path = Path("data") / DRIVE_CACHE_FOLDER,
    *,
    on_progress: ProgressCallback | None = None,
    logger: Logger | None = None,
) -> Path | None:
    """The local weights file to start from: downloaded for "imagenet", None for "none", fetched into the cache
    (MD5-verified) for drive://ID, the path otherwise."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return download_imagenet_weights()
    if (file_id := parse_drive_source(weights)) is not None:
        settings = drive or DriveSettings()
        cached = download_from_drive(file_id, settings, cache_dir, on_progress=on_progress, logger=logger)
        return cached.path
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {weights!r} does not exist; give 'imagenet', 'none' or a file path")
    return path


@task(
    name="fetch-weights",
    retries=len(NETWORK_RETRY_DELAYS_S),
    retry_delay_seconds=NETWORK_RETRY_DELAYS_S,
    retry_condition_fn=retry_only_transient_drive_errors,
)
def fetch_weights(weights: str, drive: DriveSettings | None = None, data_root: Path = Path("data")) -> Path | None:
    """Make the initial ResNet50 weights available locally (None: random initialisation)."""
    return resolve_weights(
        weights,
        drive,
        Path(data_root) / DRIVE_CACHE_FOLDER,
        on_progress=progress_artifact_updater(WEIGHTS_PROGRESS_KEY),
        logger=get_run_logger(),
    )
