"""Predict many images in batches: one image, a folder (recursively) or a zip, read as training reads them.

A photo reaches training through preparation (`inspect_image`: turned upright per its EXIF orientation, converted
to an RGB JPEG or PNG when TensorFlow would not decode it as it is) and then `decode_image`. Every file predicted
here takes the same two steps, so a phone photo taken in portrait, a WebP or a CMYK JPEG gets the probabilities
its prepared copy would get. Evaluation and `tuneflow predict` both come through here, so a photo gets the same
probabilities from the CLI as in `predictions.csv`. An image that cannot be read is reported with its reason (the
one preparation would skip it for) and the rest carry on.
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

from tuneflow.dataset.archive import IMAGE_SUFFIXES, UNSUPPORTED_IMAGE_SUFFIXES, suffix_of, unsupported_format
from tuneflow.dataset.images import inspect_image
from tuneflow.evaluation.metrics import predictions_table
from tuneflow.imaging.decoding import decode_image
from tuneflow.training.model import predict_probabilities

# A folder or zip is read as preparation reads a dataset.zip: files with these suffixes are tried (the photo
# formats preparation cannot read are named with the fix); every other file is counted as ignored, not tried.
LISTED_SUFFIXES = IMAGE_SUFFIXES | frozenset(UNSUPPORTED_IMAGE_SUFFIXES)
# Any picture can be predicted: min_image_size only keeps tiny files out of training.
PREDICT_MIN_SIDE = 1
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
    elif zipfile.is_zipfile(target) and suffix_of(target.name) not in IMAGE_SUFFIXES:
        with zipfile.ZipFile(target) as archive:
            files = [
                info.filename
                for info in archive.infolist()
                if not info.is_dir() and not _is_hidden_or_noise(PurePosixPath(info.filename).parts)
            ]
    else:
        return ImageListing(names=[str(target)])
    is_image = [suffix_of(PurePosixPath(name).name) in LISTED_SUFFIXES for name in files]
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
    """The decoded uint8 image, through preparation's check and then the training decoder, or why it cannot be.

    A plain RGB JPEG or PNG (every prepared file) is checked from its header and end and decoded as it is, so
    evaluation decodes exactly the bytes training did; anything else is turned upright and converted first.
    """
    if not encoded:
        return "the file is empty"
    seen = inspect_image(encoded, PREDICT_MIN_SIDE)
    if seen.reason is not None:
        return seen.detail
    if seen.converted is not None:
        encoded = seen.converted
    try:
        return decode_image(tf.constant(encoded), image_size).numpy()
    except tf.errors.OpError as error:  # rare after inspect_image; then TensorFlow's own reason is the best one
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
        if isinstance(encoded, OSError):
            image: np.ndarray | str | OSError = encoded
        else:  # a HEIC or RAW photo is named as such, as preparation names it, not as a file of unknown bytes
            image = unsupported_format(suffix_of(PurePosixPath(name).name)) or decode_or_reason(encoded, image_size)
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
