"""The content cache: a verified copy of each Drive revision under `<cache_dir>/<file id>/<md5>/<title>`, so an
unchanged file costs one metadata request. The run's cache_dir is data_root/cache/drive (tuneflow.storage).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydrive2.drive import GoogleDrive

from tuneflow.fetch.drive.download import DEFAULT_CHUNK_BYTES, download_file
from tuneflow.fetch.drive.errors import DriveIntegrityError
from tuneflow.fetch.drive.logs import Logger, log
from tuneflow.fetch.drive.metadata import DriveFile, fetch_file_metadata, require_downloadable
from tuneflow.fetch.drive.progress import ProgressCallback
from tuneflow.fetch.drive.retry import RetryPolicy


@dataclass(frozen=True)
class CachedDownload:
    """A verified local copy of a Drive file and whether this call had to download it."""

    path: Path
    file: DriveFile
    downloaded: bool


def safe_filename(title: str) -> str:
    """A Drive title usable as one file name: no separators, no leading dots, not empty."""
    name = re.sub(r"[\x00-\x1f/\\]", "_", title).strip().lstrip(".")
    return name[:200] or "download"


def cache_path_for(cache_dir: Path, file: DriveFile) -> Path:
    """Where a verified copy of this content lives: keyed by file ID and MD5, so a new revision gets a new path."""
    return Path(cache_dir) / file.id / str(file.md5) / safe_filename(file.title)


def _remove_stale_parts(cache_dir: Path, file: DriveFile) -> None:
    """Partial downloads of this file's earlier revisions: Drive serves only the head, so they can never finish."""
    for stale in (Path(cache_dir) / file.id).glob("*/.*.part"):
        if stale.parent.name != file.md5:
            stale.unlink(missing_ok=True)


def fetch_to_cache(
    drive: GoogleDrive,
    file_id: str,
    cache_dir: Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    retry: RetryPolicy | None = None,
    on_progress: ProgressCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> CachedDownload:
    """A verified local copy of the Drive file's current revision, downloaded only if not already cached."""
    file = fetch_file_metadata(drive, file_id, retry=retry, sleep=sleep, logger=logger)
    require_downloadable(file)
    if file.trashed:
        logger.warning("Drive file %s (%s) is in the trash; using it anyway", file.id, file.title)
    target = cache_path_for(cache_dir, file)
    _remove_stale_parts(cache_dir, file)
    # The cached copy was MD5-verified before it was renamed into place and its path holds the MD5, so a size
    # check is enough here; re-hashing a large archive on every run would cost more than it protects.
    if target.is_file() and target.stat().st_size == file.size:
        logger.info(
            "%s (Drive file %s, revision %s, MD5 %s) is unchanged: using %s",
            file.title, file.id, file.revision, file.md5, target,
        )
        return CachedDownload(target, file, downloaded=False)
    kwargs = dict(chunk_bytes=chunk_bytes, retry=retry, on_progress=on_progress, sleep=sleep, logger=logger)
    try:
        download_file(drive, file, target, **kwargs)
    except DriveIntegrityError:
        # A new revision uploaded mid-download looks like corruption; if Drive now lists other content, get that.
        latest = fetch_file_metadata(drive, file_id, retry=retry, sleep=sleep, logger=logger)
        if latest.md5 == file.md5:
            raise
        logger.warning(
            "%s changed on Drive during the download (now revision %s); downloading that", file.title, latest.revision
        )
        require_downloadable(latest)
        file, target = latest, cache_path_for(cache_dir, latest)
        download_file(drive, file, target, **kwargs)
    return CachedDownload(target, file, downloaded=True)
