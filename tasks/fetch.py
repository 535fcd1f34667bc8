"""Fetch step: turn the configured source into a local dataset archive, recording where it came from."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from prefect import task
from pydantic import BaseModel

HASH_CHUNK_BYTES = 4 * 1024 * 1024


class FetchedArchive(BaseModel):
    """A dataset archive on local disk and its provenance, recorded with every model trained on it."""

    path: Path
    source: str
    md5: str
    size_bytes: int
    drive_file_id: str | None = None
    drive_revision: str | None = None


def md5_of_file(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


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
            f"source {str(path)!r} is not a zip archive; give a .zip made with e.g. `zip -r dataset.zip dataset/`"
        )
    path = path.resolve()
    return FetchedArchive(path=path, source=source, md5=md5_of_file(path), size_bytes=path.stat().st_size)


@task(name="fetch-dataset")
def fetch_dataset(source: str) -> FetchedArchive:
    """Locate the dataset archive named by the source and fingerprint it."""
    return locate_local_archive(source)
