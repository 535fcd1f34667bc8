"""Decoded images on disk, one file per photo, so every epoch after the decoding pass reads pixels, not JPEGs.

Why not `tf.data.Dataset.cache()`: in memory it holds the whole decoded dataset (11 GB for Food-101 at 224 px),
and a shuffle after it holds it all a second time; on disk it writes one file whose lockfile, left by a killed
training process, makes every later run fail with "There appears to be a concurrent caching iterator running".
Here each photo becomes `<cache>/<n>.tensor` (its uint8 pixels, serialised), the input pipeline shuffles the list
of these files (a few bytes per photo) and reads them in parallel, so memory stays a few batches whatever the
dataset's size, and the operating system's page cache keeps small datasets in RAM anyway.

A cache is complete when its `complete.json` is there and describes the same photos at the same size. A
training process killed while writing one leaves it without that file, and the next attempt (a resumed run)
deletes it and decodes again; there is no lock to go stale. Training deletes its caches when it ends.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from tuneflow.image_decoding import DecodePlan, decode_with_plan, plan_decode_of_file

COMPLETE_FILE = "complete.json"
CACHE_SUFFIX = ".tensor"
# Progress events while decoding: about this many per pass, at least one per photo for tiny sets.
PROGRESS_EVENTS_PER_PASS = 20

Emit = Callable[[dict], None]


def describe_sources(paths: list[str], image_size: int) -> dict:
    """What a complete cache must have been made from: the photos (by path, in order) and the size."""
    listing = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    return {"images": len(paths), "image_size": image_size, "sources_sha256": listing}


def cache_files(cache_dir: Path, count: int) -> list[str]:
    return [str(cache_dir / f"{index:07d}{CACHE_SUFFIX}") for index in range(count)]


def is_complete(cache_dir: Path, expected: dict) -> bool:
    marker = cache_dir / COMPLETE_FILE
    try:
        return json.loads(marker.read_text()) == expected
    except (OSError, ValueError):
        return False


def ensure_decoded_cache(
    paths: list[str], image_size: int, cache_dir: Path, emit: Emit = lambda event: None, name: str = ""
) -> list[str]:
    """The cache files of these photos decoded at image_size, decoding them first unless a complete cache exists.

    Decoding runs in parallel in a tf.data pipeline that writes each photo's pixels from TensorFlow itself; the
    Python loop only counts for the progress events.
    """
    cache_dir = Path(cache_dir)
    expected = describe_sources(paths, image_size)
    files = cache_files(cache_dir, len(paths))
    if is_complete(cache_dir, expected):
        emit({"event": "cache", "name": name, "state": "reused", "images": len(paths)})
        return files
    if cache_dir.exists():  # left by a killed run, or made from other photos or another size: start again
        shutil.rmtree(cache_dir)
    cache_dir.mkdir(parents=True)
    chunk = max(1, len(paths) // PROGRESS_EVENTS_PER_PASS)
    emit({"event": "cache", "name": name, "state": "decoding", "images": len(paths), "done": 0, "step": chunk})

    # Planned from the headers, then each plan's photos decoded by a graph without conditionals (see
    # tuneflow.image_decoding): the same pixels as decode_image, at a fraction of the cost per photo.
    groups: dict[DecodePlan, list[int]] = {}
    for index, path in enumerate(paths):
        groups.setdefault(read_plan(path, image_size), []).append(index)

    def decode_group(plan: DecodePlan, indices: list[int]) -> tf.data.Dataset:
        def decode_and_write(source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
            pixels = decode_with_plan(tf.io.read_file(source), image_size, plan)
            with tf.control_dependencies([tf.io.write_file(target, tf.io.serialize_tensor(pixels))]):
                return tf.constant(1, tf.int64)

        sources = tf.data.Dataset.from_tensor_slices(([paths[i] for i in indices], [files[i] for i in indices]))
        return sources.map(decode_and_write, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)

    groups_in_turn = [decode_group(plan, indices) for plan, indices in groups.items()]
    done = 0
    for written in functools.reduce(tf.data.Dataset.concatenate, groups_in_turn).batch(chunk) if paths else []:
        done += int(tf.reduce_sum(written))
        emit({"event": "cache", "name": name, "state": "decoding", "images": len(paths), "done": done, "step": chunk})
    temporary = cache_dir / f".{COMPLETE_FILE}.tmp"
    temporary.write_text(json.dumps(expected))
    os.replace(temporary, cache_dir / COMPLETE_FILE)  # last: only a cache with every photo written is complete
    emit({"event": "cache", "name": name, "state": "complete", "images": len(paths)})
    return files


def read_plan(path: str, image_size: int) -> DecodePlan:
    try:
        return plan_decode_of_file(path, image_size)
    except (OSError, ValueError) as error:  # Pillow's UnidentifiedImageError is an OSError
        raise ValueError(
            f"cannot read the image header of {path!r} ({type(error).__name__}: {error}); training reads the "
            "photos preparation wrote: prepare the archive again (tuneflow retrain does) instead of editing them"
        ) from error


def read_cached(file: tf.Tensor, image_size: int) -> tf.Tensor:
    """One photo's pixels from its cache file."""
    pixels = tf.io.parse_tensor(tf.io.read_file(file), tf.uint8)
    return tf.ensure_shape(pixels, (image_size, image_size, 3))
