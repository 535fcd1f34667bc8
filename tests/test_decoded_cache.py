"""The decoded-image cache: reused when complete, rebuilt when a crash left it half-written, never wedged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tuneflow.decoded_cache import COMPLETE_FILE, ensure_decoded_cache, read_cached
from tuneflow.image_decoding import decode_image
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


def test_photos_of_every_size_and_format_are_cached_as_decode_image_sees_them(tmp_path):
    """The cache plans each photo from its header and decodes it without conditionals; decode_image (predict,
    serving) plans inside the graph. Every plan must give the same pixels both ways, at 224 px as in training."""
    import io

    from PIL import Image

    from tuneflow.image_decoding import plan_decode_of_file

    shapes = [(512, 512, "JPEG"), (512, 384, "JPEG"), (384, 512, "JPEG"), (512, 341, "JPEG"), (300, 200, "JPEG"),
              (2400, 800, "JPEG"), (4032, 3024, "JPEG"), (60, 40, "JPEG"), (512, 384, "PNG"), (900, 700, "PNG"),
              (1400, 300, "PNG")]
    paths = []
    for number, (width, height, fmt) in enumerate(shapes):
        coarse = np.random.default_rng(number).integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), "uint8")
        encoded = io.BytesIO()
        Image.fromarray(coarse).resize((width, height), Image.BILINEAR).save(
            encoded, fmt, **({"quality": 85, "progressive": number % 2 == 0} if fmt == "JPEG" else {}))
        path = tmp_path / f"{number}.{fmt.lower()}"
        path.write_bytes(encoded.getvalue())
        paths.append(str(path))
    plans = {plan_decode_of_file(path, 224) for path in paths}
    assert {(plan.ratio, plan.resize) for plan in plans} >= {
        (2, "bilinear"), (1, "area"), (1, "bilinear"), (4, "antialias"), (8, "antialias"), (1, "antialias")}
    files = ensure_decoded_cache(paths, 224, tmp_path / "cache")
    for path, file in zip(paths, files, strict=True):
        expected = decode_image(tf.io.read_file(path), 224).numpy()
        np.testing.assert_array_equal(read_cached(tf.constant(file), 224).numpy(), expected, err_msg=path)


def test_a_photo_whose_header_cannot_be_read_is_named(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot read the image header of .*broken.jpg.*prepare the archive again"):
        ensure_decoded_cache([str(broken)], 32, tmp_path / "cache")
    assert not (tmp_path / "cache" / COMPLETE_FILE).exists()


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
