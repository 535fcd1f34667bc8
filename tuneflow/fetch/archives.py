"""The dataset archive a run trains on: a local zip, or a Drive file fetched into the content cache, and the
record of where it came from (`FetchedArchive`), kept with every model trained on it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from pydantic import BaseModel

from tuneflow.checksums import md5_of_file
from tuneflow.config import DriveSettings
from tuneflow.dataset.archive import describe_non_zip
from tuneflow.fetch.drive import KeyLoader, Logger, ProgressCallback, download_from_drive, load_key_from_settings
from tuneflow.sources import parse_drive_source


class FetchedArchive(BaseModel):
    """A dataset archive on local disk and its provenance, recorded with every model trained on it."""

    path: Path
    source: str
    md5: str
    size_bytes: int
    drive_file_id: str | None = None
    drive_revision: str | None = None


def fetch_archive(
    source: str,
    settings: DriveSettings,
    cache_dir: Path,
    *,
    load_key: KeyLoader = load_key_from_settings,
    on_progress: ProgressCallback | None = None,
    logger: Logger | None = None,
) -> FetchedArchive:
    """Locate the local dataset archive, or download the Drive one into the cache, and fingerprint it."""
    file_id = parse_drive_source(source)
    if file_id is None:
        return locate_local_archive(source)
    return fetch_drive_archive(
        source, file_id, settings, cache_dir, load_key=load_key, on_progress=on_progress, logger=logger
    )


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


def fetch_drive_archive(
    source: str,
    file_id: str,
    settings: DriveSettings,
    cache_dir: Path,
    *,
    load_key: KeyLoader = load_key_from_settings,
    on_progress: ProgressCallback | None = None,
    logger: Logger | None = None,
) -> FetchedArchive:
    """Download (or reuse) the Drive dataset archive and record its file ID, revision and MD5."""
    cached = download_from_drive(
        file_id, settings, cache_dir, load_key=load_key, on_progress=on_progress, logger=logger
    )
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
