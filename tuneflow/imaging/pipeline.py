"""The tf.data input pipelines training and evaluation read photos through: each photo decoded once into the
store (tuneflow.imaging.decoded_cache), during training's first epoch (tuneflow.imaging.first_epoch) or in a pass
before it, then read back in parallel, batched and prefetched."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tuneflow.events import Emit, PhotosReused
from tuneflow.imaging.decoded_cache import (
    decoding_threads, ensure_decoded_cache, fixed_parallelism, read_batches, read_cached, survey_store)
from tuneflow.imaging.first_epoch import PREFETCH_BATCHES, FirstEpochDecoder


def list_split(root: Path, split: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """File paths and class indices of one split, in a stable order."""
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / split / name).iterdir() if p.is_file())
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    return paths, labels


def make_input_pipeline(
    paths: list[str],
    labels: list[int],
    num_classes: int,
    image_size: int,
    batch_size: int,
    seed: int,
    cache_dir: Path,
    shuffle: bool,
    drop_remainder: bool = False,
    emit: Emit = lambda event: None,
    name: str = "",
    decode_in_first_epoch: bool = True,
) -> tf.data.Dataset:
    """Batches of (pixels, one-hot label), reshuffled every epoch (seeded) when `shuffle`; each photo the store at
    cache_dir lacks decoded once: in the first epoch (tuneflow.imaging.first_epoch), or, without
    `decode_in_first_epoch` (training across machines), in a pass before this returns. Every later epoch reads the
    store (tuneflow.imaging.decoded_cache.read_batches), prefetched.
    """
    if decode_in_first_epoch:
        survey = survey_store(paths, image_size, cache_dir)
        if survey.missing:
            decoder = FirstEpochDecoder(paths, labels, survey, image_size, seed, shuffle, emit, name)
            return with_sharding(decoder.dataset(num_classes, batch_size, drop_remainder))
        emit(PhotosReused(name=name, images=len(paths)))
        files = [str(file) for file in survey.files]
    else:
        files = ensure_decoded_cache(paths, image_size, cache_dir, emit, name=name)
    dataset = read_batches(files, labels, num_classes, image_size, batch_size, seed, shuffle, drop_remainder)
    return with_sharding(dataset.prefetch(PREFETCH_BATCHES).with_options(fixed_parallelism()))


def with_sharding(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    # Across machines each one reads the file list (at the same path everywhere) and keeps its share of batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def make_prediction_pipeline(
    paths: list[str], image_size: int, batch_size: int, cache_dir: Path, emit: Emit = lambda event: None,
    name: str = "",
) -> tf.data.Dataset:
    """Batches of the photos' pixels in the order given, for model.predict: what training reads, without labels
    or shuffling. Photos the store holds already (training's, when it is kept across runs) are not decoded again.
    """
    files = ensure_decoded_cache(paths, image_size, cache_dir, emit, name=name)
    dataset = tf.data.Dataset.from_tensor_slices(files).map(
        lambda file: read_cached(file, image_size), num_parallel_calls=decoding_threads(), deterministic=True
    )
    return dataset.batch(batch_size).prefetch(PREFETCH_BATCHES).with_options(fixed_parallelism())
