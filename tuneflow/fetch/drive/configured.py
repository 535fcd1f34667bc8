"""Drive as a run's `DriveSettings` configure it: the key, the client, the retry policy, and the two things a run
reads from Drive (a verified copy of a file in the content cache, and the head of a watched file or folder).

The one place where the config meets the rest of this package. A key kept in a Prefect Secret block can only be
read through Prefect, so the task layer passes its own key loader as `load_key`; plain callers get the key file
or the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydrive2.drive import GoogleDrive

from tuneflow.checksums import md5_of_file
from tuneflow.config import DriveSettings
from tuneflow.fetch.drive.cache import CachedDownload, fetch_to_cache
from tuneflow.fetch.drive.client import connect_drive
from tuneflow.fetch.drive.errors import DriveCredentialsError
from tuneflow.fetch.drive.keys import ServiceAccountKey, load_service_account_key
from tuneflow.fetch.drive.logs import Logger, log
from tuneflow.fetch.drive.metadata import DriveFile, fetch_file_metadata, find_newest_file, require_downloadable
from tuneflow.fetch.drive.progress import ProgressCallback
from tuneflow.fetch.drive.retry import RetryPolicy

KeyLoader = Callable[[DriveSettings], ServiceAccountKey]


def load_key_from_settings(settings: DriveSettings) -> ServiceAccountKey:
    """The key from drive.key_file, else TUNEFLOW_DRIVE_KEY_FILE, else GOOGLE_APPLICATION_CREDENTIALS.

    Raises DriveCredentialsError when the settings name a Secret block: only the Prefect tasks can read one.
    """
    if settings.key_secret_block:
        raise DriveCredentialsError(
            f"drive.key_secret_block {settings.key_secret_block!r} names a Prefect Secret block, which only the "
            "Prefect tasks can read; outside a flow give the key file instead (drive.key_file, --key-file, or "
            "TUNEFLOW_DRIVE_KEY_FILE)"
        )
    return load_service_account_key(settings.key_file)


def connect_with_settings(settings: DriveSettings, load_key: KeyLoader = load_key_from_settings) -> GoogleDrive:
    """A client authenticated with the configured key, timeout and (for an emulator) API endpoint."""
    key = load_key(settings)
    return connect_drive(key, http_timeout_s=settings.http_timeout_s, api_endpoint=settings.api_endpoint)


def retry_policy_from(settings: DriveSettings) -> RetryPolicy:
    return RetryPolicy(max_retries=settings.max_retries, base_delay_s=settings.retry_base_delay_s)


def download_from_drive(
    file_id: str,
    settings: DriveSettings,
    cache_dir: Path,
    *,
    load_key: KeyLoader = load_key_from_settings,
    on_progress: ProgressCallback | None = None,
    logger: Logger | None = None,
) -> CachedDownload:
    """A verified copy of the Drive file's current revision in the content cache (downloaded only if new)."""
    logger = logger or log
    drive = connect_with_settings(settings, load_key)
    options = dict(
        chunk_bytes=settings.chunk_mib * 1024 * 1024,
        retry=retry_policy_from(settings),
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


def find_watched_file(
    settings: DriveSettings,
    *,
    file_id: str | None,
    folder_id: str | None,
    title: str,
    load_key: KeyLoader = load_key_from_settings,
    logger: Logger | None = None,
) -> DriveFile | None:
    """The watched file's metadata (None once it is in the trash), or the newest file called `title` in the
    watched folder (None when there is none); DriveNotDownloadableError when it is not a binary file."""
    logger = logger or log
    drive = connect_with_settings(settings, load_key)
    retry = retry_policy_from(settings)
    if file_id:
        file = fetch_file_metadata(drive, file_id, retry=retry, logger=logger)
        if file.trashed:
            return None
    else:
        file = find_newest_file(drive, str(folder_id), title, retry=retry, logger=logger)
        if file is None:
            return None
    require_downloadable(file)
    return file
