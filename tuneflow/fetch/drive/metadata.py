"""What Drive says about a file: its metadata, whether it can be downloaded, and finding the newest upload.

Folders and Google Docs are refused from the metadata alone, before any byte is fetched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydrive2.drive import GoogleDrive

from tuneflow.fetch.drive.errors import DriveNotDownloadableError
from tuneflow.fetch.drive.logs import Logger, log
from tuneflow.fetch.drive.retry import RetryPolicy, with_retries
from tuneflow.sources import FILE_ID_PATTERN

FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
GOOGLE_APPS_MIME_PREFIX = "application/vnd.google-apps."
# v2 names: the trashed flag lives under labels; md5Checksum/headRevisionId/fileSize exist only for binary files.
METADATA_FIELDS = "id,title,mimeType,fileSize,md5Checksum,headRevisionId,modifiedDate,labels(trashed)"


@dataclass(frozen=True)
class DriveFile:
    """What Drive says about a file: enough to decide whether to download it and to check what arrived."""

    id: str
    title: str
    mime_type: str
    size: int | None
    md5: str | None
    revision: str | None
    modified: str
    trashed: bool = False

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DriveFile:
        size = metadata.get("fileSize")
        return cls(
            id=str(metadata["id"]),
            title=str(metadata.get("title") or metadata["id"]),
            mime_type=str(metadata.get("mimeType", "")),
            size=int(size) if size is not None else None,
            md5=metadata.get("md5Checksum"),
            revision=metadata.get("headRevisionId"),
            modified=str(metadata.get("modifiedDate", "")),
            trashed=bool((metadata.get("labels") or {}).get("trashed", False)),
        )

    @property
    def is_folder(self) -> bool:
        return self.mime_type == FOLDER_MIME_TYPE


def require_downloadable(file: DriveFile) -> None:
    """Refuse folders and Google Docs/Sheets/... files, which have no bytes to download as a .zip."""
    if file.is_folder:
        raise DriveNotDownloadableError(
            f"Drive ID {file.id!r} ({file.title!r}) is a folder, not a file; give the ID of the .zip inside it "
            "(open the file's menu → Share → Copy link)"
        )
    if file.mime_type.startswith(GOOGLE_APPS_MIME_PREFIX):
        kind = file.mime_type.removeprefix(GOOGLE_APPS_MIME_PREFIX)
        raise DriveNotDownloadableError(
            f"Drive file {file.id!r} ({file.title!r}) is a Google {kind} file ({file.mime_type}), which has no "
            "downloadable bytes; upload the .zip itself to Drive and use that file's ID"
        )
    if file.size is None or not file.md5:
        raise DriveNotDownloadableError(
            f"Drive file {file.id!r} ({file.title!r}, {file.mime_type}) has no size or MD5 in its metadata, so a "
            "download could not be verified; upload the .zip as a regular file"
        )


def fetch_file_metadata(
    drive: GoogleDrive,
    file_id: str,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> DriveFile:
    """Read the file's metadata (one request, retried when transient)."""

    def request() -> DriveFile:
        drive_file = drive.CreateFile({"id": file_id})
        drive_file.FetchMetadata(fields=METADATA_FIELDS)
        return DriveFile.from_metadata(drive_file.metadata)

    return with_retries(f"reading metadata of Drive file {file_id!r}", request, drive, file_id, retry, sleep, logger)


def find_newest_file(
    drive: GoogleDrive,
    folder_id: str,
    title: str = "dataset.zip",
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> DriveFile | None:
    """The most recently modified non-trashed file called `title` in the folder, or None if there is none.

    A fresh upload of dataset.zip into a folder gets a new file ID, so a watcher looks it up by name.
    """
    if not FILE_ID_PATTERN.fullmatch(folder_id):
        raise ValueError(f"folder_id {folder_id!r} is not a Drive ID (10+ letters, digits, '-' or '_')")
    query = (
        f"title = {_query_string(title)} and {_query_string(folder_id)} in parents and trashed = false "
        f"and mimeType != {_query_string(FOLDER_MIME_TYPE)}"
    )

    def request() -> DriveFile | None:
        # maxResults=1 makes GetList a single request instead of walking every page.
        file_list = drive.ListFile(
            {
                "q": query,
                "orderBy": "modifiedDate desc",
                "maxResults": 1,
                "fields": f"items({METADATA_FIELDS}),nextPageToken",
            }
        )
        items = file_list.GetList()
        return DriveFile.from_metadata(items[0]) if items else None

    return with_retries(
        f"listing {title!r} in Drive folder {folder_id!r}", request, drive, folder_id, retry, sleep, logger
    )


def _query_string(value: str) -> str:
    """A Drive query string literal: quotes and backslashes escaped with a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
