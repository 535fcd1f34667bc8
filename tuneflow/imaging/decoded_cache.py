"""Decoded photos on disk, one file per photo named by the SHA-256 of its bytes, kept from one run to the next.

Every epoch after the decoding pass reads pixels, not JPEGs; and since a weekly retrain sees last week's photos
again, a store kept across runs (`data_root/cache/decoded/`, `storage.keep_decoded_photos`) means its decoding
pass decodes only the photos that are new since then: the first epoch of a retrain on a growing dataset costs
what its new photos cost.

Layout (tuneflow.imaging.decoded_layout): `<store root>/<image_size>px-v<decoder version>-tf<TensorFlow version>/
<sha256[:2]>/<sha256>.tensor`, each file one photo's uint8 pixels, serialised. The decoder version
(`tuneflow.imaging.decoding.DECODER_VERSION`, bumped by hand, held to it by a test of the pixels) and
TensorFlow's version (its decoders and resize kernels) name what could give other pixels for the same bytes: a
change starts a new store instead of mixing two decoders' output, and editing the code in any other way keeps it.

Why not `tf.data.Dataset.cache()`: in memory it holds the whole decoded dataset (15 GB for Food-101 at 224 px),
and a shuffle after it holds it all a second time; on disk it writes one file whose lockfile, left by a killed
training process, makes every later run fail with "There appears to be a concurrent caching iterator running".
Here the input pipeline shuffles the list of files (a few bytes per photo) and reads them in parallel, so memory
stays a few batches whatever the dataset's size, and the operating system's page cache keeps small datasets in
RAM anyway.

Safe against kills and against runs side by side: a photo is decoded into a staging folder of its own pass and
renamed into place once written whole (a rename is atomic), chunk by chunk, so a killed pass keeps what it
finished and never leaves a half-written file under a photo's name; two runs decoding the same photo write the
same bytes, and the last rename wins. Every use sets a file's modification time, which is how retention
(`tuneflow.runs.retention`) tells which photos no kept run uses any more.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from tuneflow.dataset.extract import usable_cores
from tuneflow.events import Emit, PhotosDecoded, PhotosDecoding, PhotosReused
from tuneflow.imaging.decoded_layout import STAGING_PREFIX, STALE_STAGING_SECONDS, cache_file
from tuneflow.imaging.decoding import (
    DECODER_VERSION, HEADER_BYTES, DecodePlan, decode_with_plan, plan_decodes, read_image_header)

# Progress events while decoding: about this many per pass, at least one per photo for tiny sets.
PROGRESS_EVENTS_PER_PASS = 20


def decoding_threads() -> int:
    """Threads that decode (or read) photos: twice the cores this process may use, so that a thread waiting on a
    write or a read leaves its core to another (measured on 2 cores: 4 threads decoded 830-890 photos/s where 2
    did 720-840)."""
    return 2 * usable_cores()


def fixed_parallelism() -> tf.data.Options:
    """tf.data options for our pipelines: the parallelism set above, not tuned. On 2 cores the autotuner settled
    at random on a parallelism that left one core idle (measured: 35-50 % idle, half the speed, in one run of
    three or so, for keras' loader and for ours alike); fixed, every run uses every core."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def store_for(store_root: Path, image_size: int) -> Path:
    return Path(store_root) / f"{image_size}px-v{DECODER_VERSION}-tf{tf.__version__}"


@functools.cache
def cached_file_bytes(image_size: int) -> int:
    """The size of every complete cache file at this image size: a shorter or longer one is damaged."""
    return len(tf.io.serialize_tensor(tf.zeros((image_size, image_size, 3), tf.uint8)).numpy())


def read_photo_header(path: str) -> tuple[str, tuple[int, int, bool]]:
    """(SHA-256 of the file's bytes, (width, height, jpeg) from its header)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        return hashlib.sha256(data).hexdigest(), read_image_header(path, head=data[:HEADER_BYTES])
    except (OSError, ValueError) as error:  # Pillow's UnidentifiedImageError is an OSError
        raise ValueError(
            f"cannot read the image header of {path!r} ({type(error).__name__}: {error}); training reads the "
            "photos preparation wrote: prepare the archive again (tuneflow retrain does) instead of editing them"
        ) from error


def is_whole(file: Path, image_size: int) -> bool:
    try:
        return file.stat().st_size == cached_file_bytes(image_size)
    except OSError:
        return False


def remove_stale_staging(store: Path) -> None:
    """Staging folders of passes killed long ago (a live pass's folder is never this old)."""
    if not store.is_dir():
        return
    for staging in store.glob(f"{STAGING_PREFIX}*"):
        try:
            if time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(staging, ignore_errors=True)
        except FileNotFoundError:
            continue


@dataclass(frozen=True)
class StoreSurvey:
    """What the store holds of a list of photos: each photo's digest and header, its cache file, and which distinct
    photos are missing (each by the position of its first occurrence in the list)."""

    store: Path
    headers: list[tuple[str, tuple[int, int, bool]]]
    files: list[Path]
    missing: dict[str, int]

    @property
    def reused(self) -> int:
        """Photos of the list (copies counted) that the store holds already."""
        return len(self.files) - sum(1 for digest, _ in self.headers if digest in self.missing)


def read_photo_headers(paths: list[str]) -> list[tuple[str, tuple[int, int, bool]]]:
    """Every photo's digest and header. Threads only where there are cores to spare: each photo costs ~60 us
    (read, hash, scan), and with two cores a thread pool's hand-offs and GIL contention tripled that (measured:
    0.06 ms a photo in one thread against 0.17-0.2 ms through a pool of two)."""
    workers = min(usable_cores(), 8)
    if workers <= 2 or len(paths) < 1000:
        return [read_photo_header(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read_photo_header, paths, chunksize=64))


def survey_store(paths: list[str], image_size: int, store_root: Path) -> StoreSurvey:
    """Read every photo's header and digest, and mark each photo the store holds whole as used (its modification
    time is how retention tells which photos no kept run uses any more)."""
    store = store_for(store_root, image_size)
    store.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(store)
    headers = read_photo_headers(paths)
    files = [cache_file(store, digest) for digest, _ in headers]
    # One decode per distinct photo the store lacks (or holds damaged); every other photo is a hit, marked used.
    missing: dict[str, int] = {}
    for index, ((digest, _), file) in enumerate(zip(headers, files)):
        if digest in missing:
            continue
        if is_whole(file, image_size):
            os.utime(file)
        else:
            missing[digest] = index
    return StoreSurvey(store=store, headers=headers, files=files, missing=missing)


def new_staging_folder(store: Path) -> Path:
    """A decoding pass's own folder: its photos are written there, then renamed into place once whole."""
    staging = store / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def ensure_decoded_cache(
    paths: list[str], image_size: int, store_root: Path, emit: Emit = lambda event: None, name: str = ""
) -> list[str]:
    """The cache file of each photo decoded at image_size, decoding only the photos the store does not hold, all
    before it returns: evaluation's way, and training's across machines (tuneflow.imaging.first_epoch decodes
    during the first epoch instead).

    Decoding runs in parallel in a tf.data pipeline that writes each photo's pixels from TensorFlow itself; the
    Python loop only renames finished chunks into place and counts for the progress events.
    """
    survey = survey_store(paths, image_size, store_root)
    files = survey.files
    if not survey.missing:
        emit(PhotosReused(name=name, images=len(paths)))
        return [str(file) for file in files]

    staging = new_staging_folder(survey.store)
    try:
        decode_into_store(paths, survey.headers, files, list(survey.missing.values()), image_size, staging, emit,
                          name, survey.reused)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    emit(PhotosDecoded(name=name, images=len(paths), decoded=len(survey.missing), reused=survey.reused))
    return [str(file) for file in files]


def decode_into_store(
    paths: list[str], headers: list[tuple[str, tuple[int, int, bool]]], files: list[Path], indices: list[int],
    image_size: int, staging: Path, emit: Emit, name: str, reused: int,
) -> None:
    """Decode the photos at `indices` into staging, then rename each finished chunk to its place in the store."""
    chunk = max(1, len(indices) // PROGRESS_EVENTS_PER_PASS)
    progress = PhotosDecoding(name=name, images=len(indices), reused=reused, step=chunk, done=0)
    emit(progress)
    staged = {index: str(staging / files[index].name) for index in indices}
    # Each plan's photos decoded by a graph without conditionals (see tuneflow.imaging.decoding): the same pixels
    # as decode_image, at a fraction of the cost per photo. All planned in one call of the rules.
    groups: dict[DecodePlan, list[int]] = {}
    for index, plan in zip(indices, plan_decodes([headers[index][1] for index in indices], image_size)):
        groups.setdefault(plan, []).append(index)

    def decode_group(plan: DecodePlan, members: list[int]) -> tf.data.Dataset:
        def decode_and_write(index: tf.Tensor, source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
            with tf.control_dependencies([decode_into_file(source, target, image_size, plan)]):
                return tf.identity(index)  # yielded once its file is written whole

        sources = tf.data.Dataset.from_tensor_slices(
            (members, [paths[i] for i in members], [staged[i] for i in members]))
        return sources.map(decode_and_write, num_parallel_calls=decoding_threads(), deterministic=False)

    done = 0
    decoded = functools.reduce(tf.data.Dataset.concatenate, [decode_group(*group) for group in groups.items()])
    for written in decoded.batch(chunk).with_options(fixed_parallelism()):
        for index in written.numpy().tolist():
            files[index].parent.mkdir(exist_ok=True)
            os.replace(staged[index], files[index])
        done += len(written)
        emit(progress.model_copy(update={"done": done, "step": len(written)}))


def decode_into_file(source: tf.Tensor, target: tf.Tensor, image_size: int, plan: DecodePlan) -> tf.Tensor:
    """One photo decoded as `plan` says and written to `target` (a staging file): its pixels, once written."""
    pixels = decode_with_plan(tf.io.read_file(source), image_size, plan)
    with tf.control_dependencies([tf.io.write_file(target, tf.io.serialize_tensor(pixels))]):
        return tf.identity(pixels)


def read_cached(file: tf.Tensor, image_size: int) -> tf.Tensor:
    """One photo's pixels from its cache file."""
    pixels = tf.io.parse_tensor(tf.io.read_file(file), tf.uint8)
    return tf.ensure_shape(pixels, (image_size, image_size, 3))


def read_batches(files: list[str], labels: list[int], num_classes: int, image_size: int, batch_size: int, seed: int,
                 shuffle: bool, drop_remainder: bool) -> tf.data.Dataset:
    """Batches of (pixels, one-hot label) read from the store: the file list reshuffled every epoch (seeded) when
    `shuffle`, cached pixels read in parallel. What every epoch reads once the store holds every photo.

    Memory stays a few batches whatever the dataset's size: what is shuffled is the list of files, a few bytes per
    photo, never the decoded images.
    """
    dataset = tf.data.Dataset.from_tensor_slices((files, labels))
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda file, label: (read_cached(file, image_size), tf.one_hot(label, num_classes)),
                          num_parallel_calls=decoding_threads(), deterministic=True)
    # Batches stay uint8 (4x less to copy to the GPU); the model casts its input to float itself.
    return dataset.batch(batch_size, drop_remainder=drop_remainder)
