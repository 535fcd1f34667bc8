"""The decoded-photo store: each photo decoded once whatever the run, as decode_image decodes it; a damaged or
half-written photo never read as pixels; never wedged by a killed pass."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tuneflow.events import PhotosDecoded, PhotosDecoding, PhotosReused, TrainingEvent
from tuneflow.imaging.decoded_cache import cached_file_bytes, ensure_decoded_cache, read_cached
from tuneflow.imaging.decoded_layout import CACHE_SUFFIX, STAGING_PREFIX
from tuneflow.imaging.decoding import decode_image
from tuneflow.imaging.pipeline import list_split, make_input_pipeline


REPO = Path(__file__).resolve().parents[1]
FOOD101_PHOTOS = 101 * 1000  # every one goes through the store: train and val pipelines both read it


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

    from tuneflow.imaging.decoding import plan_decodes, read_image_header

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
    plans = set(plan_decodes([read_image_header(path) for path in paths], 224))
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
    assert not list((tmp_path / "cache").rglob(f"*{CACHE_SUFFIX}"))


def decoding_events(events: list[TrainingEvent]) -> tuple[int, int]:
    """(photos decoded, photos reused) as the pass reported them."""
    match events[-1]:
        case PhotosReused(images=images):
            return 0, images
        case PhotosDecoded(decoded=decoded, reused=reused):
            return decoded, reused
    raise AssertionError(f"the pass ended without saying what it decoded: {events[-1]!r}")


def test_a_damaged_or_missing_photo_is_decoded_again_and_whole_ones_are_reused(tiny_dataset, tmp_path):
    paths, cache = photos(tiny_dataset), tmp_path / "cache"
    files = ensure_decoded_cache(paths, 32, cache)
    for file in files[10:]:  # lost, e.g. by hand
        Path(file).unlink()
    with open(files[9], "r+b") as handle:  # cut short: a disk that filled up under another tool
        handle.truncate(100)
    events = []
    again = ensure_decoded_cache(paths, 32, cache, events.append)
    assert again == files and decoding_events(events) == (15, 9)
    np.testing.assert_array_equal(read_cached(tf.constant(files[9]), 32).numpy(),
                                  decode_image(tf.io.read_file(paths[9]), 32).numpy())
    events = []
    ensure_decoded_cache(paths, 32, cache, events.append)
    assert [type(e) for e in events] == [PhotosReused]
    # Another size never reuses it: a store of its own.
    events = []
    other = ensure_decoded_cache(paths, 48, cache, events.append)
    assert decoding_events(events) == (24, 0) and Path(other[0]).parent.parent != Path(files[0]).parent.parent
    assert read_cached(tf.constant(other[0]), 48).shape == (48, 48, 3)


def test_the_next_run_decodes_only_its_new_photos_and_a_changed_photo_again(tiny_dataset, tmp_path):
    """What a weekly retrain on a growing dataset does: last week's photos are in the store, named by their
    bytes, so only this week's are decoded; a photo edited in place is new bytes, never last week's pixels."""
    from PIL import Image

    paths, store = photos(tiny_dataset), tmp_path / "store"
    ensure_decoded_cache(paths[:16], 32, store)
    edited = tmp_path / "edited.jpg"
    Image.open(paths[3]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(edited, quality=90)
    this_week = [*paths, str(edited)]
    events = []
    files = ensure_decoded_cache(this_week, 32, store, events.append)
    assert decoding_events(events) == (9, 16)
    for path, file in zip(this_week, files, strict=True):
        np.testing.assert_array_equal(read_cached(tf.constant(file), 32).numpy(),
                                      decode_image(tf.io.read_file(path), 32).numpy(), err_msg=path)
    assert files[3] != files[-1]


def test_the_same_bytes_twice_are_decoded_once(tiny_dataset, tmp_path):
    paths = photos(tiny_dataset)[:4]
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(Path(paths[0]).read_bytes())
    events = []
    files = ensure_decoded_cache([*paths, str(copy)], 32, tmp_path / "cache", events.append)
    assert decoding_events(events) == (4, 0) and files[0] == files[-1]


def test_a_pass_stopped_midway_keeps_what_it_finished_and_no_half_written_photo(tiny_dataset, tmp_path):
    paths, cache = photos(tiny_dataset), tmp_path / "cache"

    def stop_after_the_first_chunk(event):
        if isinstance(event, PhotosDecoding) and event.done > 0:
            raise KeyboardInterrupt  # what stopping the training process does to the pass

    with pytest.raises(KeyboardInterrupt):
        ensure_decoded_cache(paths, 32, cache, stop_after_the_first_chunk)
    store = next(cache.iterdir())
    written = list(store.glob(f"*/*{CACHE_SUFFIX}"))
    assert 0 < len(written) < 24 and not list(store.glob(f"{STAGING_PREFIX}*"))
    assert {file.stat().st_size for file in written} == {cached_file_bytes(32)}
    # A staging folder left by a process killed long ago goes; a live pass's (fresh) one stays.
    stale, live = store / f"{STAGING_PREFIX}1-dead", store / f"{STAGING_PREFIX}2-live"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "half.tensor").write_bytes(b"x" * 10)
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    events = []
    files = ensure_decoded_cache(paths, 32, cache, events.append)
    assert decoding_events(events) == (24 - len(written), len(written))
    assert not stale.exists() and live.exists()
    assert all(Path(file).stat().st_size == cached_file_bytes(32) for file in files)


def test_every_epoch_sees_every_photo_once_in_a_new_order(tiny_dataset, tmp_path):
    paths, labels = list_split(tiny_dataset.root, "train", tiny_dataset.classes)
    dataset = make_input_pipeline(paths, labels, 3, 32, 8, seed=0, cache_dir=tmp_path / "cache", shuffle=True)
    epochs = [np.concatenate([images.numpy().reshape(len(images), -1)[:, :8] for images, _ in dataset]) for _ in range(2)]
    assert epochs[0].shape == (24, 8) and not np.array_equal(epochs[0], epochs[1])
    assert sorted(map(bytes, epochs[0])) == sorted(map(bytes, epochs[1]))  # the same photos, in another order


def test_the_docs_give_the_size_the_store_takes_for_food101():
    """README, docs/training.md and docs/operations.md state one size for Food-101 at 224 px: the size of the files."""
    size = round(FOOD101_PHOTOS * cached_file_bytes(224) / 1e9)  # 101,000 x 150,550 bytes
    for page in ("README.md", "docs/training.md", "docs/operations.md"):
        text = " ".join((REPO / page).read_text(encoding="utf-8").split())  # a phrase may wrap across lines
        stated = re.findall(r"(\d+) GB for Food-101 at 224 px", text)
        assert stated and set(stated) == {str(size)}, f"{page} gives {stated or 'no'} GB for the store; it takes {size} GB"
