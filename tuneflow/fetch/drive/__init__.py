"""Google Drive downloads for unattended workers: pydrive2 with a service account, resumable, verified, cached.

Plain typed functions with no Prefect imports; `tasks/fetch.py` wraps them. One module per concern, in the order
a run uses them:

- `keys`: `load_service_account_key` finds and checks the key (option, Secret JSON, environment).
- `client`: `connect_drive`, pydrive2 authenticated from an explicit settings dict, with an HTTP timeout, never
  able to reach pydrive2's browser login.
- `metadata`: `fetch_file_metadata` / `require_downloadable` (title, type, size, MD5, head revision; folders and
  Google Docs are refused before any byte is fetched) and `find_newest_file` (the newest non-trashed file with a
  given name in a folder: a fresh upload gets a new ID).
- `retry`: `RetryPolicy` and the loop every request runs in; `errors`: the DriveError types it raises.
- `download`: `download_file`, bounded Range requests into a `.part` file, resumed, checked against Drive's size
  and MD5, then renamed into place; `part_writer` writes and hashes on a helper thread, `progress` reports.
- `cache`: `fetch_to_cache`, the above under `<cache>/drive/<file id>/<md5>/<title>`, so an unchanged file costs
  one metadata request.
- `configured`: all of it as a run's `DriveSettings` say: `download_from_drive` (a cached copy, re-checked
  against Drive's MD5) and `find_watched_file` (what the sensor reads), with the key from `load_key`.

The names below are the package's API; import them from `tuneflow.fetch.drive`. The key's contents never reach a log
line, an exception or a repr.
"""

from tuneflow.fetch.drive.cache import CachedDownload, cache_path_for, fetch_to_cache
from tuneflow.fetch.drive.client import connect_drive
from tuneflow.fetch.drive.configured import (
    KeyLoader,
    download_from_drive,
    find_watched_file,
    load_key_from_settings,
)
from tuneflow.fetch.drive.download import DEFAULT_CHUNK_BYTES, download_file
from tuneflow.fetch.drive.errors import (
    DriveAccessError,
    DriveCredentialsError,
    DriveError,
    DriveIntegrityError,
    DriveNotDownloadableError,
    DriveTransientError,
)
from tuneflow.fetch.drive.keys import ServiceAccountKey, load_service_account_key
from tuneflow.fetch.drive.logs import Logger
from tuneflow.fetch.drive.metadata import DriveFile, fetch_file_metadata, find_newest_file, require_downloadable
from tuneflow.fetch.drive.progress import DownloadProgress, ProgressCallback
from tuneflow.fetch.drive.retry import RetryPolicy

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "CachedDownload",
    "DownloadProgress",
    "DriveAccessError",
    "DriveCredentialsError",
    "DriveError",
    "DriveFile",
    "DriveIntegrityError",
    "DriveNotDownloadableError",
    "DriveTransientError",
    "KeyLoader",
    "Logger",
    "ProgressCallback",
    "RetryPolicy",
    "ServiceAccountKey",
    "cache_path_for",
    "connect_drive",
    "download_file",
    "download_from_drive",
    "fetch_file_metadata",
    "fetch_to_cache",
    "find_newest_file",
    "find_watched_file",
    "load_key_from_settings",
    "load_service_account_key",
    "require_downloadable",
]
