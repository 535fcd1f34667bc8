"""The one image loader everything uses: encoded bytes -> image_size x image_size uint8 RGB, every shrink antialiased.

How a photo is decoded depends only on its format and size, so the choice is a `DecodePlan` made from the
header:

- A JPEG is decoded straight at 1/2, 1/4 or 1/8 of its size (an area downscale inside the decoder, in the DCT
  domain, far cheaper than decoding every pixel only to shrink it) when its shorter side stays at least 6/7 of
  image_size. Food-101's 512x384 photos thus decode at 256x192 for 224 px, the same class of low-pass as its
  512x512 ones at 256x256 (measured against a full decode with an antialiased resize: 2.6 gray levels both,
  tests/test_training.py); the last 1.17x on the shorter side is a bilinear enlargement, which cannot alias.
  TensorFlow's own ResNet input pipeline decodes with the same fast integer DCT.
- What is left is resized by the cheapest filter that does not alias at that factor: bilinear below a 2x shrink
  (it samples every source pixel there) or for an enlargement; area averaging (a box filter) from 2x to 3x with
  both sides shrinking on a photo decoded at full size (512x341, PNGs), cheaper than TensorFlow's antialiased
  bilinear; antialiased bilinear (a triangle filter widened to the factor) otherwise: panoramas, and phone photos
  after their 1/8 decode.

The plans run in two places that must give the same pixels: `decode_image` plans inside the graph, with
conditionals (what `tuneflow predict` and a served model need: any photo, one at a time); the training cache
plans all its photos at once from their headers and decodes each group of photos with the same plan in a graph
without conditionals, since a conditional in a tf.data function costs more than the resize it chooses (measured:
0.9 ms of 2.3 per 512x384 photo). So each part is written once and both read it: the table of plans (`PLANS`),
the rules that pick one (`plan_indices`, a TensorFlow function that decode_image calls in its graph and the cache
on a whole dataset's headers at once; its filter rule `resize_index`) and what a plan does (`decode_with_plan`).
tests/test_decoded_cache.py checks the pixels agree; tests/test_decoder_version.py that they change only with
`DECODER_VERSION`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import tensorflow as tf
from PIL import Image

from tuneflow.dataset.images import plain_jpeg_size

# Names the decoded store (tuneflow.imaging.decoded_cache): bump it whenever the same bytes could decode to other
# pixels (a rule or threshold below, a filter, the rounding, a decode option, the header scan), so the next run
# starts a new store instead of mixing two decoders' pixels. Only then: a bump throws away every decoded photo
# (15 GB for Food-101), so comments and refactors that keep the pixels leave it alone. tests/test_decoder_version.py
# fails when the pixels change and this does not.
DECODER_VERSION = 1

# JPEG decoders can scale by 1/2, 1/4 or 1/8 while decoding (in the DCT domain), largest first.
JPEG_DECODE_RATIOS = (8, 4, 2)
# A scaled decode may leave the shorter side this fraction of image_size short (numerator, denominator): 6/7
# keeps 4:3 photos at 512 px on the cheap path for 224 px, and 3:2 ones (341 px -> 170) off it.
SCALED_SHORTER_SIDE_AT_LEAST = (6, 7)
ResizeFilter = Literal["bilinear", "area", "antialias"]
RESIZE_FILTERS: tuple[ResizeFilter, ...] = ("bilinear", "area", "antialias")
HEADER_BYTES = 4096  # where a plain JPEG's frame header or a PNG's IHDR is
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class DecodePlan:
    jpeg: bool
    ratio: int  # 1, 2, 4 or 8: the JPEG decoder's downscale
    resize: ResizeFilter


# Every plan there is: the one table both decoding paths read, so that they cannot drift apart. `plan_indices`
# picks a row for each photo; decode_image has a branch per row, the decoded cache a graph per row its photos use,
# each running `decode_with_plan`. Every format, ratio and filter combined, so whatever the rules choose has its
# row (a few, such as area after a DCT downscale, are never chosen).
JPEG_PLANS = tuple(DecodePlan(True, ratio, resize) for ratio in (*JPEG_DECODE_RATIOS, 1) for resize in RESIZE_FILTERS)
OTHER_PLANS = tuple(DecodePlan(False, 1, resize) for resize in RESIZE_FILTERS)  # decoded whole: a row per filter
PLANS = JPEG_PLANS + OTHER_PLANS


def resize_index(shorter: tf.Tensor, longer: tf.Tensor, decoded_whole: tf.Tensor | bool, image_size: int) -> tf.Tensor:
    """The position in RESIZE_FILTERS of the cheapest filter that does not alias, for decoded images of these sides."""
    # After a DCT downscale (itself a box filter), a second box blurs more than the triangle: measured 4.6 gray
    # levels from the reference on a 4032x3024 phone photo, 1.9 with the triangle, whose cost is small beside the
    # decode of such a photo. Hence area only after a whole decode.
    area = (longer < 3 * image_size) & (shorter >= image_size) & decoded_whole
    return tf.where(longer < 2 * image_size, RESIZE_FILTERS.index("bilinear"),
                    tf.where(area, RESIZE_FILTERS.index("area"), RESIZE_FILTERS.index("antialias")))


# A function, not eager operations: `tuneflow predict` decodes photo by photo, eagerly, and one call costs less than
# the thirty operations it runs (measured: 0.4 against 0.9 ms).
@tf.function(input_signature=[tf.TensorSpec(None, tf.int32), tf.TensorSpec(None, tf.int32),
                              tf.TensorSpec(None, tf.bool), tf.TensorSpec([], tf.int32)], autograph=False)
def plan_indices(width: tf.Tensor, height: tf.Tensor, jpeg: tf.Tensor, image_size: tf.Tensor) -> tf.Tensor:
    """The position in PLANS of each photo's plan, from its size and format (tensors of one shape, any shape).

    The rules, written once: decode_image runs them in its graph for a JPEG, the decoded cache for the headers of
    all its photos at once.
    """
    numerator, denominator = SCALED_SHORTER_SIDE_AT_LEAST
    shorter, longer = tf.minimum(width, height), tf.maximum(width, height)
    # The largest DCT downscale whose shorter side stays at least 6/7 of image_size; 1 when none does (or no JPEG).
    ratio = tf.ones_like(shorter)
    for candidate in sorted(JPEG_DECODE_RATIOS):  # smallest first: the largest that fits is written last
        ratio = tf.where(jpeg & (shorter * denominator >= candidate * image_size * numerator), candidate, ratio)
    # libjpeg rounds a scaled side up
    resize = resize_index(-(-shorter // ratio), -(-longer // ratio), tf.equal(ratio, 1), image_size)
    # The plan is the row of PLANS with this format, ratio and filter.
    matches = (tf.equal(tf.expand_dims(jpeg, -1), [plan.jpeg for plan in PLANS])
               & tf.equal(tf.expand_dims(ratio, -1), [plan.ratio for plan in PLANS])
               & tf.equal(tf.expand_dims(resize, -1), [RESIZE_FILTERS.index(plan.resize) for plan in PLANS]))
    return tf.argmax(tf.cast(matches, tf.int32), axis=-1, output_type=tf.int32)


def plan_decodes(headers: Sequence[tuple[int, int, bool]], image_size: int) -> list[DecodePlan]:
    """The plan of each photo from its (width, height, jpeg), all in one call of the rules."""
    if not headers:
        return []
    widths, heights, jpegs = zip(*headers)
    indices = plan_indices(tf.constant(widths, tf.int32), tf.constant(heights, tf.int32), tf.constant(jpegs),
                           image_size)
    return [PLANS[index] for index in indices.numpy().tolist()]


def read_image_header(path: str, head: bytes | None = None) -> tuple[int, int, bool]:
    """(width, height, jpeg) of one photo from its first few KB (`head`, when the caller has read them already),
    never the pixels.

    The JPEGs and PNGs preparation writes are read by a scan of their markers or their IHDR chunk (7x cheaper
    than Pillow, which parses every table in Python: 22 against 156 microseconds a photo); anything else by
    Pillow.
    """
    if head is None:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    head = head[:HEADER_BYTES]
    jpeg_size = plain_jpeg_size(head)
    if jpeg_size:
        return (*jpeg_size, True)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), False
    with Image.open(path) as image:
        return (*image.size, image.format in ("JPEG", "MPO"))


def _decode_jpeg(encoded: tf.Tensor, ratio: int) -> tf.Tensor:
    return tf.io.decode_jpeg(encoded, channels=3, ratio=ratio, dct_method="INTEGER_FAST")


def _decode_other(encoded: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _resize(image: tf.Tensor, image_size: int, resize: ResizeFilter) -> tf.Tensor:
    size = (image_size, image_size)
    if resize == "area":
        resized = tf.image.resize(image, size, method="area")
    else:
        resized = tf.image.resize(image, size, method="bilinear", antialias=resize == "antialias")
    # Rounded to uint8 (cached images take 4x less memory than float32). Every filter here is a weighted mean
    # with non-negative weights, so values stay within 0..255 and truncating x + 0.5 rounds: one pass where
    # round() and a saturating cast take three.
    return tf.cast(resized + 0.5, tf.uint8)


def decode_with_plan(encoded: tf.Tensor, image_size: int, plan: DecodePlan) -> tf.Tensor:
    """Decode and resize as `plan` says, in a graph without conditionals."""
    image = _decode_jpeg(encoded, plan.ratio) if plan.jpeg else _decode_other(encoded)
    return _resize(image, image_size, plan.resize)


def decode_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes -> image_size x image_size x 3 uint8 RGB, the plan made in the graph."""

    def decode_jpeg() -> tf.Tensor:
        height, width = tf.unstack(tf.io.extract_jpeg_shape(encoded)[:2])
        index = plan_indices(width, height, True, image_size)  # JPEG_PLANS come first in PLANS
        return tf.switch_case(index, [functools.partial(decode_with_plan, encoded, image_size, plan)
                                      for plan in JPEG_PLANS])

    def decode_other() -> tf.Tensor:
        image = _decode_other(encoded)  # once, to learn its size, then resized as its plan says
        sides = tf.shape(image)[:2]
        # Decoded whole, its plan is its filter's row of OTHER_PLANS: the filter rule alone, in a few operations
        # where a call of plan_indices costs more (measured: 0.3-0.5 ms a PNG in `tuneflow predict`, which is eager).
        index = resize_index(tf.reduce_min(sides), tf.reduce_max(sides), True, image_size)
        return tf.switch_case(index, [functools.partial(_resize, image, image_size, plan.resize)
                                      for plan in OTHER_PLANS])

    return tf.cond(tf.io.is_jpeg(encoded), decode_jpeg, decode_other)
