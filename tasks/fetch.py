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


def resolve_weights(weights: str) -> Path | None:
    """The local weights file to start from: downloaded for "imagenet", None for "none", the path otherwise."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return download_imagenet_weights()
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {weights!r} does not exist; give 'imagenet', 'none' or a file path")
    return path


@task(name="fetch-weights")
def fetch_weights(weights: str) -> Path | None:
    """Make the initial ResNet50 weights available locally (None: random initialisation)."""
    return resolve_weights(weights)
