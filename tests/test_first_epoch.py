"""Training's first epoch decodes the photos the store lacks as it reads them (tuneflow.imaging.first_epoch): the
pixels are decode_image's, every photo lands in the store whole, an epoch cut short keeps what it finished and the
next one decodes the rest, and later epochs read the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tuneflow.events import PhotosDecoded, PhotosDecoding, PhotosReused
from tuneflow.imaging.decoded_cache import cached_file_bytes
from tuneflow.imaging.decoded_layout import CACHE_SUFFIX, STAGING_PREFIX
from tuneflow.imaging.decoding import decode_image
from tuneflow.imaging.pipeline import list_split, make_input_pipeline

SIZE = 32


def stored(cache: Path) -> list[Path]:
    return list(cache.glob(f"*/*/*{CACHE_SUFFIX}"))


def rows(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


def epoch(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*((images.numpy(), labels.numpy()) for images, labels in dataset))
    return np.concatenate(images), np.concatenate(labels)


def test_the_first_epoch_decodes_what_it_reads_and_the_next_reads_the_store(tiny_dataset, tmp_path):
    paths, labels = list_split(tiny_dataset.root, "train", tiny_dataset.classes)
    cache, events = tmp_path / "cache", []
    dataset = make_input_pipeline(paths, labels, 3, SIZE, 4, seed=0, cache_dir=cache, shuffle=True,
                                  emit=events.append, name="train")
    # Nothing decoded before the epoch: building the pipeline only read the headers.
    assert stored(cache) == [] and events == [PhotosDecoding(name="train", images=24, reused=0, step=1, done=0)]
    assert dataset.cardinality() == 6  # Keras knows the epoch's length, not warning that the input "ran out of data"

    expected = {decode_image(tf.io.read_file(path), SIZE).numpy().tobytes(): label
                for path, label in zip(paths, labels, strict=True)}
    first_images, first_labels = epoch(dataset)
    assert rows(first_images) == sorted(expected)  # every photo once, as decode_image sees it
    assert [expected[image.tobytes()] for image in first_images] == np.argmax(first_labels, axis=1).tolist()
    files = stored(cache)
    assert len(files) == 24 and {file.stat().st_size for file in files} == {cached_file_bytes(SIZE)}
    assert events[-1] == PhotosDecoded(name="train", images=24, decoded=24, reused=0)
    assert [e.done for e in events if isinstance(e, PhotosDecoding)][-1] == 24
    assert not list(cache.glob(f"*/{STAGING_PREFIX}*"))  # the pass's staging folder is gone

    # The second epoch reads the store: nothing decoded, nothing reported, another order, the same photos.
    def identities() -> dict[Path, tuple[int, int]]:
        return {file: (file.stat().st_ino, file.stat().st_mtime_ns) for file in stored(cache)}

    stamps = identities()
    count = len(events)
    second_images, _ = epoch(dataset)
    assert rows(second_images) == rows(first_images) and not np.array_equal(second_images, first_images)
    assert len(events) == count and identities() == stamps

    # A run after it finds every photo in the store.
    events.clear()
    make_input_pipeline(paths, labels, 3, SIZE, 4, seed=0, cache_dir=cache, shuffle=True, emit=events.append,
                        name="train")
    assert events == [PhotosReused(name="train", images=24)]


def test_an_epoch_cut_short_keeps_the_batches_it_finished_and_the_next_decodes_the_rest(tiny_dataset, tmp_path):
    paths, labels = list_split(tiny_dataset.root, "train", tiny_dataset.classes)
    cache, events = tmp_path / "cache", []
    dataset = make_input_pipeline(paths, labels, 3, SIZE, 2, seed=0, cache_dir=cache, shuffle=True,
                                  emit=events.append)
    iterator = iter(dataset)
    next(iterator)
    del iterator  # as when training stops mid-epoch: a few batches were read ahead, not all twelve
    kept = stored(cache)
    assert 2 <= len(kept) < 24 and {file.stat().st_size for file in kept} == {cached_file_bytes(SIZE)}
    assert not any(isinstance(event, PhotosDecoded) for event in events)

    images, _ = epoch(dataset)
    assert rows(images) == sorted(decode_image(tf.io.read_file(path), SIZE).numpy().tobytes() for path in paths)
    assert len(stored(cache)) == 24 and events[-1] == PhotosDecoded(name="", images=24, decoded=24, reused=0)


def test_the_validation_order_is_kept_and_a_repeated_photo_is_decoded_into_one_file(tiny_dataset, tmp_path):
    paths = list_split(tiny_dataset.root, "val", tiny_dataset.classes)[0][:5]
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(Path(paths[0]).read_bytes())
    paths.append(str(copy))
    cache, events = tmp_path / "cache", []
    dataset = make_input_pipeline(paths, list(range(6)), 6, SIZE, 4, seed=0, cache_dir=cache, shuffle=False,
                                  emit=events.append)
    for _ in range(2):
        images, labels = epoch(dataset)
        assert np.argmax(labels, axis=1).tolist() == list(range(6))  # unshuffled: the order given
        for image, path in zip(images, paths, strict=True):
            np.testing.assert_array_equal(image, decode_image(tf.io.read_file(path), SIZE).numpy(), err_msg=path)
    assert len(stored(cache)) == 5 and events[-1] == PhotosDecoded(name="", images=6, decoded=5, reused=0)
