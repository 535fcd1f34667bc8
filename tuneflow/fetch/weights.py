"""The weights ResNet50 starts from: Keras' ImageNet file, none (random initialisation), a local file, or a file
on Drive fetched into the content cache."""

from __future__ import annotations

from pathlib import Path

from tuneflow.config import DriveSettings
from tuneflow.fetch.drive import (
    KeyLoader,
    Logger,
    ProgressCallback,
    download_from_drive,
    load_key_from_settings,
)
from tuneflow.sources import parse_drive_source
from tuneflow.storage import DEFAULT_DATA_ROOT, DRIVE_CACHE

# Keras' own ResNet50 "notop" weights: the file and checksum keras.applications.ResNet50(weights="imagenet") uses.
IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{IMAGENET_NOTOP_FILE}"
IMAGENET_NOTOP_MD5 = "4d473c1dd8becc155b73f8504c6f6626"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could not be downloaded; the message names the alternatives."""


def download_imagenet_weights() -> Path:
    """Keras' ImageNet weights for ResNet50 without its top, from the Keras cache (KERAS_HOME) or downloaded."""
    import keras  # here, not at the top: importing Keras costs seconds that "none" or a Drive file never need

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
    cache_dir: Path = DEFAULT_DATA_ROOT / DRIVE_CACHE,
    *,
    load_key: KeyLoader = load_key_from_settings,
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
        cached = download_from_drive(
            file_id, settings, cache_dir, load_key=load_key, on_progress=on_progress, logger=logger
        )
        return cached.path
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {weights!r} does not exist; give 'imagenet', 'none' or a file path")
    return path
