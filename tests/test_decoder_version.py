"""The decoded store is named by DECODER_VERSION, so the version must change exactly when the decoder's pixels do.

Too late, and a store mixes two decoders' pixels for the same photos; too often, and a whole Food-101 store
(15 GB) is decoded again for nothing. The photos in tests/decoder_fixtures/ take every decode plan at 8 px, at the
edges of the rules (tests/decoder_fixtures/make_fixtures.py says how they were made); their pixels, through
decode_image and through the decoded cache, are recorded here for each decoder version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from tuneflow.events import PhotosDecoded, PhotosReused, TrainingEvent
from tuneflow.imaging.decoded_cache import ensure_decoded_cache, read_cached
from tuneflow.imaging.decoding import DECODER_VERSION, decode_image, plan_decodes, read_image_header

FIXTURES = Path(__file__).parent / "decoder_fixtures"
IMAGE_SIZE = 8
# DECODER_VERSION -> {fixture: SHA-256 of its decoded pixels, first 16 hex digits}. A new version adds a row.
GOLDEN_PIXELS = {
    1: {
        "jpeg1-antialias-422.jpg": "fc803d0ec1e33200",
        "jpeg1-area-420.jpg": "c3af941fc6835b26",
        "jpeg1-bilinear-444.jpg": "849b1fc9bf632d39",
        "jpeg2-antialias-420.jpg": "6cebe39dfb617a84",
        "jpeg2-bilinear-gray.jpg": "70b32fedd99192c5",
        "jpeg4-antialias-progressive.jpg": "4596e21af89503dc",
        "jpeg4-bilinear-422.jpg": "f34b5460280af7fb",
        "jpeg8-antialias-444.jpg": "a73b108e5b2c792d",
        "jpeg8-bilinear-420.jpg": "30e122fd2d8784e7",
        "png-antialias.png": "97973f11a37ffded",
        "png-area-gray.png": "97ea52e0564ad0d0",
        "png-bilinear.png": "3285c2d6787a4dc2",
    },
}


def fixture_paths() -> list[str]:
    return sorted(str(path) for path in FIXTURES.iterdir() if path.suffix in (".jpg", ".png"))


def pixel_hash(pixels: np.ndarray) -> str:
    assert pixels.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and pixels.dtype == np.uint8
    return hashlib.sha256(pixels.tobytes()).hexdigest()[:16]


def test_the_fixtures_take_every_plan_the_rules_can_choose():
    """A plan no fixture takes could change its pixels unnoticed."""
    every_size = [(width, height, jpeg) for width in range(1, 200) for height in range(1, 200)
                  for jpeg in (True, False)]
    taken = set(plan_decodes([read_image_header(path) for path in fixture_paths()], IMAGE_SIZE))
    assert set(plan_decodes(every_size, IMAGE_SIZE)) - taken == set()


def test_the_decoder_pixels_change_only_with_decoder_version(tmp_path):
    paths = fixture_paths()
    decoded = {Path(path).name: pixel_hash(decode_image(tf.io.read_file(path), IMAGE_SIZE).numpy())
               for path in paths}
    files = ensure_decoded_cache(paths, IMAGE_SIZE, tmp_path / "store")
    cached = {Path(path).name: pixel_hash(read_cached(tf.constant(file), IMAGE_SIZE).numpy())
              for path, file in zip(paths, files, strict=True)}
    assert cached == decoded, "the decoded cache and decode_image disagree: see tests/test_decoded_cache.py"

    record = (f"bump DECODER_VERSION in tuneflow/imaging/decoding.py to {DECODER_VERSION + 1} (so existing decoded "
              f"stores are not mixed with the new pixels) and record GOLDEN_PIXELS[{DECODER_VERSION + 1}] = "
              f"{decoded!r} in {Path(__file__).name}")
    expected = GOLDEN_PIXELS.get(DECODER_VERSION)
    assert expected is not None, (f"no pixels recorded for DECODER_VERSION {DECODER_VERSION}: record "
                                  f"GOLDEN_PIXELS[{DECODER_VERSION}] = {decoded!r} in {Path(__file__).name}")
    changed = sorted(name for name in decoded if expected.get(name) != decoded[name])
    assert not changed, f"the decoder's pixels changed for {changed} but DECODER_VERSION did not: {record}"
    previous = GOLDEN_PIXELS.get(DECODER_VERSION - 1)
    assert previous != decoded, (
        f"DECODER_VERSION {DECODER_VERSION} decodes these photos as {DECODER_VERSION - 1} did: a bump throws away "
        "every decoded store, so undo it, or add a photo to tests/decoder_fixtures/ that shows the change")


def test_a_new_decoder_version_starts_a_new_store_and_keeps_the_old_one(tmp_path, monkeypatch):
    """What a bump does to a kept store: every photo decoded again, beside (not over) the old version's."""
    from tuneflow.imaging import decoded_cache

    paths, store = fixture_paths(), tmp_path / "store"
    old_files = ensure_decoded_cache(paths, IMAGE_SIZE, store)
    events: list[TrainingEvent] = []
    monkeypatch.setattr(decoded_cache, "DECODER_VERSION", DECODER_VERSION + 1)
    new_files = ensure_decoded_cache(paths, IMAGE_SIZE, store, events.append)
    assert events[-1] == PhotosDecoded(name="", images=len(paths), decoded=len(paths), reused=0)
    assert not set(new_files) & set(old_files) and all(Path(file).is_file() for file in old_files)
    monkeypatch.undo()
    events = []
    assert ensure_decoded_cache(paths, IMAGE_SIZE, store, events.append) == old_files
    assert events == [PhotosReused(name="", images=len(paths))]
