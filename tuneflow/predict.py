"""Predict many images in batches: one image, a folder (recursively) or a zip, through the training image loader.

Evaluation and `tuneflow predict` both come through here, so a photo gets the same probabilities from the CLI as
in `predictions.csv`. An image that cannot be decoded is reported with its reason and the rest carry on.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tuneflow.metrics import predictions_table
from tuneflow.model import decode_image, predict_probabilities

# What tf.io.decode_image reads; other files in a folder or zip are counted as ignored, not tried.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# Images decoded and predicted per model.predict() call: bounds memory (256 x 224 x 224 x 3 bytes = 38 MB).
PREDICT_CHUNK = 256


@dataclass
class ImageListing:
    """The images found in a target, and the files passed over because they are not images."""

    names: list[str]
    ignored: list[str] = field(default_factory=list)


@dataclass
class Unreadable:
    name: str
    reason: str


@dataclass
class Predictions:
    """One row per decoded image (see predictions_table) and the inputs that could not be read."""

    table: pd.DataFrame
    unreadable: list[Unreadable]


def _is_hidden_or_noise(parts: Iterable[str]) -> bool:
    # macOS adds __MACOSX/ and ._name resource forks to zips; neither is a photo.
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def list_images(target: Path) -> ImageListing:
    """Image names in a file, folder or zip: the path for a file, relative paths in a folder, member names in a zip."""
    target = Path(target)
    if not target.exists():
        raise FileNotFoundError(f"{str(target)!r} does not exist; give an image file, a folder of images or a .zip")
    if target.is_dir():
        files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
        files = [name for name in files if not _is_hidden_or_noise(PurePosixPath(name).parts)]
    elif zipfile.is_zipfile(target) and target.suffix.lower() not in IMAGE_SUFFIXES:
        with zipfile.ZipFile(target) as archive:
            files = [
                info.filename
                for info in archive.infolist()
                if not info.is_dir() and not _is_hidden_or_noise(PurePosixPath(info.filename).parts)
            ]
    else:
        return ImageListing(names=[str(target)])
    is_image = [PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES for name in files]
    return ImageListing(
        names=[name for name, image in zip(files, is_image) if image],
        ignored=[name for name, image in zip(files, is_image) if not image],
    )


def read_encoded(target: Path, names: list[str]) -> Iterator[tuple[str, bytes | OSError]]:
    """(name, file bytes) for each name, or (name, the error) when the bytes cannot be read."""
    target = Path(target)
    if target.is_dir():
        for name in names:
            try:
                yield name, (target / name).read_bytes()
            except OSError as error:
                yield name, error
    elif len(names) == 1 and names[0] == str(target):
        try:
            yield names[0], target.read_bytes()
        except OSError as error:
            yield names[0], error
    else:
        with zipfile.ZipFile(target) as archive:
            for name in names:
                try:
                    yield name, archive.read(name)
                except (OSError, zipfile.BadZipFile) as error:  # a damaged member (bad CRC) is one bad file
                    yield name, OSError(str(error))


def decode_or_reason(encoded: bytes, image_size: int) -> np.ndarray | str:
    """The decoded uint8 image, or why it could not be decoded."""
    if not encoded:
        return "the file is empty"
    try:
        return decode_image(tf.constant(encoded), image_size).numpy()
    except tf.errors.OpError as error:  # TensorFlow says InvalidArgumentError for a file that is no image
        # Keep TensorFlow's sentence, drop its "{{function_node ...}}" prefix and "[Op:DecodeImage]" suffix.
        message = re.sub(r"\{\{.*?\}\}\s*", "", error.message.splitlines()[0])
        return re.sub(r"\s*\[Op:.*$", "", message).strip()


def predict_encoded(
    model: keras.Model, classes: list[str], items: Iterable[tuple[str, bytes | OSError]], chunk: int = PREDICT_CHUNK
) -> Predictions:
    """Decode and predict in chunks; an input that cannot be read or decoded is set aside with its reason."""
    image_size = int(model.input_shape[1])
    names: list[str] = []
    probabilities: list[np.ndarray] = []
    unreadable: list[Unreadable] = []
    batch_names: list[str] = []
    batch_images: list[np.ndarray] = []

    def flush() -> None:
        if batch_images:
            probabilities.append(predict_probabilities(model, np.stack(batch_images)))
            names.extend(batch_names)
            batch_names.clear()
            batch_images.clear()

    for name, encoded in items:
        image = encoded if isinstance(encoded, OSError) else decode_or_reason(encoded, image_size)
        if isinstance(image, (str, OSError)):
            unreadable.append(Unreadable(name, str(image)))
            continue
        batch_names.append(name)
        batch_images.append(image)
        if len(batch_images) == chunk:
            flush()
    flush()
    stacked = np.concatenate(probabilities) if probabilities else np.zeros((0, len(classes)), dtype=np.float32)
    return Predictions(table=predictions_table(names, stacked, classes), unreadable=unreadable)


def predict_target(model: keras.Model, classes: list[str], target: Path) -> tuple[Predictions, ImageListing]:
    """Predict every image in an image file, a folder or a zip."""
    listing = list_images(target)
    return predict_encoded(model, classes, read_encoded(target, listing.names)), listing
