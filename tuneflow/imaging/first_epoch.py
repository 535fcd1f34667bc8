"""The first epoch decodes: photos the decoded store lacks are decoded as the first epoch reads them, written into
the store beside it and renamed into place batch by batch; every later epoch reads the store.

Why not decode everything first, then train (tuneflow.imaging.decoded_cache.ensure_decoded_cache, still
evaluation's way and training's across machines): the first epoch then reads every photo twice, once as a JPEG and
once back from the store, and on a GPU worker the GPU waits through the whole pass. Measured on the food101-real
mix at 224 px on 2 cores (`bench/training_bench.py`): a pass then a read-back did 630-730 photos/s, decoding in
the first epoch 830-890.

How one dataset does both: every epoch (every iterator Keras makes) first asks Python whether the store still
lacks photos. If it does, the epoch reads a pipeline that starts with a call into Python, `epoch_elements`, listing
the epoch's photos in their order, each marked with what to do: read its cache file, or decode it with its decode
plan (tuneflow.imaging.decoding; one branch a plan, so each decode runs without conditionals inside it) and write
it into this pass's staging folder. If not, it reads the store as a run that finds every photo there does
(tuneflow.imaging.decoded_cache.read_batches). After each batch, `commit_batch` renames
the photos it decoded into place (a rename is atomic: a killed run never leaves a half-written photo under a
photo's name, and keeps every batch it finished) and reports progress. A photo is read from the store only once
a batch holding it was committed, so a photo whose batch was decoded but never reached (an epoch cut short) is
decoded again next epoch, never read half-written.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from tuneflow.events import Emit, PhotosDecoded, PhotosDecoding
from tuneflow.imaging.decoded_cache import (
    PROGRESS_EVENTS_PER_PASS, StoreSurvey, decode_into_file, decoding_threads, fixed_parallelism, new_staging_folder,
    read_batches, read_cached)
from tuneflow.imaging.decoded_layout import CACHE_SUFFIX
from tuneflow.imaging.decoding import DecodePlan, plan_decodes

# Batches made ahead of the one training uses: enough to hide a slow batch, few enough to keep memory small.
PREFETCH_BATCHES = 4
# What epoch_elements gives per photo: source path, cache file, staging file ("" when read), branch, label.
ELEMENT_TYPES = (tf.string, tf.string, tf.string, tf.int32, tf.int32)


class FirstEpochDecoder:
    """The photos of one split, what the store holds of them, and the dataset that decodes the rest as it reads."""

    def __init__(self, paths: list[str], labels: list[int], survey: StoreSurvey, image_size: int, seed: int,
                 shuffle: bool, emit: Emit, name: str) -> None:
        self.paths, self.labels, self.survey = paths, labels, survey
        self.image_size, self.seed, self.shuffle, self.emit, self.name = image_size, seed, shuffle, emit, name
        digests = [digest for digest, _ in survey.headers]
        missing = list(survey.missing.values())
        self.plans: list[DecodePlan] = []
        plan_of_missing: dict[str, DecodePlan] = {}
        for index, plan in zip(missing, plan_decodes([survey.headers[index][1] for index in missing], image_size)):
            plan_of_missing[digests[index]] = plan
            if plan not in self.plans:
                self.plans.append(plan)
        # The branch of each photo while its digest is missing: 1 + its plan's position (0 reads the store).
        self.decode_branch = [1 + self.plans.index(plan_of_missing[digest]) if digest in plan_of_missing else 0
                              for digest in digests]
        self.missing: set[str] = set(plan_of_missing)
        self.epochs_started = 0
        self.staging: Path | None = new_staging_folder(survey.store) if self.missing else None
        self.step = max(1, len(self.missing) // PROGRESS_EVENTS_PER_PASS)
        self.done = self.reported = 0
        emit(self.progress())

    def progress(self) -> PhotosDecoding:
        # `step`: the photos since the last report, so a reader can tell which quarter this report crossed.
        return PhotosDecoding(name=self.name, images=len(self.survey.missing), reused=self.survey.reused,
                              step=max(1, self.done - self.reported), done=self.done)

    def epoch_elements(self) -> tuple[np.ndarray, ...]:
        """This epoch's photos in order (reshuffled every epoch, seeded), each to read or to decode."""
        order = list(range(len(self.paths)))
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epochs_started}").shuffle(order)
        self.epochs_started += 1
        digests = [self.survey.headers[index][0] for index in order]
        branches = [self.decode_branch[index] if digest in self.missing else 0
                    for index, digest in zip(order, digests)]
        # A staging name of its own per epoch and position: an epoch cut short may still be writing its files.
        staged = [str(self.staging / f"{self.epochs_started}-{index}{CACHE_SUFFIX}") if branch else ""
                  for index, branch in zip(order, branches)]
        return (np.array([self.paths[index] for index in order], dtype=object),
                np.array([str(self.survey.files[index]) for index in order], dtype=object),
                np.array(staged, dtype=object), np.array(branches, np.int32),
                np.array([self.labels[index] for index in order], np.int32))

    def commit_batch(self, staged: np.ndarray, files: np.ndarray) -> np.int32:
        """Rename the photos this batch decoded into place; report progress; close the pass once all are there."""
        for staged_file, cache_file in zip(staged.tolist(), files.tolist()):
            if not staged_file:
                continue
            target = Path(cache_file.decode())
            target.parent.mkdir(exist_ok=True)
            os.replace(staged_file.decode(), target)
            digest = target.name.removesuffix(CACHE_SUFFIX)
            if digest in self.missing:
                self.missing.discard(digest)
                self.done += 1
        if self.done - self.reported >= self.step or (self.done > self.reported and not self.missing):
            self.emit(self.progress())
            self.reported = self.done
            if not self.missing:
                self.emit(PhotosDecoded(name=self.name, images=len(self.paths), decoded=len(self.survey.missing),
                                        reused=self.survey.reused))
                shutil.rmtree(self.staging, ignore_errors=True)
        return np.int32(self.done)

    def decodes_this_epoch(self) -> np.int64:
        """Which of the two pipelines the epoch about to start reads: 1 while the store lacks photos, else 0."""
        return np.int64(bool(self.missing))

    def dataset(self, num_classes: int, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
        size = self.image_size
        batches = len(self.paths) // batch_size if drop_remainder else -(-len(self.paths) // batch_size)

        def epoch(_: tf.Tensor) -> tf.data.Dataset:
            columns = tf.numpy_function(self.epoch_elements, [], ELEMENT_TYPES, stateful=True)
            return tf.data.Dataset.from_tensor_slices(tuple(tf.ensure_shape(column, [None]) for column in columns))

        def elements() -> tf.data.Dataset:
            return (tf.data.Dataset.from_tensors(0).flat_map(epoch)
                    .apply(tf.data.experimental.assert_cardinality(len(self.paths))))

        def load(source, file, staged, branch, label):
            pixels = tf.switch_case(branch, [functools.partial(read_cached, file, size)]
                                    + [functools.partial(decode_into_file, source, staged, size, plan)
                                       for plan in self.plans])
            return tf.ensure_shape(pixels, (size, size, 3)), tf.one_hot(label, num_classes), staged, file

        def commit(pixels, labels, staged, files):
            committed = tf.numpy_function(self.commit_batch, [staged, files], tf.int32, stateful=True)
            with tf.control_dependencies([committed]):
                return tf.identity(pixels), labels

        threads = decoding_threads()
        # Built inside a flat_map, so that an epoch that only reads never instantiates the decoding functions (on a
        # toy pipeline that saved 7 ms an epoch; starting an epoch here still costs 10-20 ms, against 3 for
        # read_batches alone: nothing beside a real dataset's epoch).
        decoding = tf.data.Dataset.from_tensors(0).flat_map(
            lambda _: elements().map(load, num_parallel_calls=threads, deterministic=True)
            .batch(batch_size, drop_remainder=drop_remainder).map(commit))
        # Once the store holds every photo, epochs read it as a run that finds them all there does: without the
        # branch per photo or the call into Python (measured: 15,000 photos/s against 11,000 through the branch).
        reading = read_batches([str(file) for file in self.survey.files], self.labels, num_classes, size, batch_size,
                               self.seed, self.shuffle, drop_remainder)
        choice = tf.data.Dataset.from_tensors(0).flat_map(lambda _: tf.data.Dataset.from_tensors(
            tf.numpy_function(self.decodes_this_epoch, [], tf.int64, stateful=True)).repeat(batches))
        # Every epoch has every photo: said so, Keras knows the epoch's length (instead of warning, at each epoch's
        # end, that the input "ran out of data").
        return (tf.data.Dataset.choose_from_datasets([reading, decoding], choice)
                .apply(tf.data.experimental.assert_cardinality(batches))
                .prefetch(PREFETCH_BATCHES).with_options(fixed_parallelism()))

