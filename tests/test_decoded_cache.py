"""The decoded-image cache: reused when complete, rebuilt when a crash left it half-written, never wedged."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from tuneflow.decoded_cache import COMPLETE_FILE, ensure_decoded_cache, read_cached
from tuneflow.model import decode_image
from tuneflow.training import list_split, make_input_pipeline


def photos(tiny_dataset) -> list[str]:
    return list_split(tiny_dataset.root, "train", tiny_dataset.classes)[0]


def test_cached_pixels_are_the_decoded_photo(tiny_dataset, tmp_path):
    paths = photos(tiny_dataset)
    files = ensure_decoded_cache(paths, 32, tmp_path / "cache")
    assert len(files) == len(paths) == 24
    for path, file in zip(paths[:3], files[:3]):
        expected = decode_image(tf.io.read_file(path), 32).numpy()
        np.testing.assert_array_equal(read_cached(tf.constant(file), 32).numpy(), expected)


def test_a_half_written_cache_is_rebuilt_and_a_complete_one_reused(tiny_dataset, tmp_path):
    paths, cache = photos(tiny_dataset), tmp_path / "cache"
    files = ensure_decoded_cache(paths, 32, cache)
    # What a kill mid-pass leaves: some photos written, one cut short, and no complete.json.
    (cache / COMPLETE_FILE).unlink()
    for file in files[10:]:
        tf.io.gfile.remove(file)
    with open(files[9], "r+b") as handle:
        handle.truncate(100)
    events = []
    again = ensure_decoded_cache(paths, 32, cache, events.append)
    assert [e["state"] for e in events][0] == "decoding" and events[-1]["state"] == "complete"
    assert again == files and all(tf.io.gfile.exists(file) for file in files)
    read_cached(tf.constant(files[9]), 32)  # whole again
    # Complete and made from the same photos at the same size: reused without decoding.
    events = []
    ensure_decoded_cache(paths, 32, cache, events.append)
    assert [e["state"] for e in events] == ["reused"]
    # Another size (or other photos) never reuses it.
    events = []
    ensure_decoded_cache(paths, 48, cache, events.append)
    assert events[-1]["state"] == "complete" and json.loads((cache / COMPLETE_FILE).read_text())["image_size"] == 48


def test_every_epoch_sees_every_photo_once_in_a_new_order(tiny_dataset, tmp_path):
    paths, labels = list_split(tiny_dataset.root, "train", tiny_dataset.classes)
    dataset = make_input_pipeline(paths, labels, 3, 32, 8, seed=0, cache_dir=tmp_path / "cache", shuffle=True)
    epochs = [np.concatenate([images.numpy().reshape(len(images), -1)[:, :8] for images, _ in dataset]) for _ in range(2)]
    assert epochs[0].shape == (24, 8) and not np.array_equal(epochs[0], epochs[1])
    assert sorted(map(bytes, epochs[0])) == sorted(map(bytes, epochs[1]))  # the same photos, in another order
