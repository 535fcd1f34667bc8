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

`decode_image` makes the plan inside the graph, with conditionals (what `tuneflow predict` and a served model
need: any photo, one at a time). The training cache plans in Python from the headers instead and decodes each
group of photos with the same plan in a graph without conditionals: a conditional in a tf.data function costs
more than the resize it chooses (measured: 0.9 ms of 2.3 per 512x384 photo). Both run the same operations, so
they give the same pixels (tests/test_decoded_cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import tensorflow as tf
from PIL import Image

from tuneflow.dataset.images import plain_jpeg_size

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


def jpeg_ratio(width: int, height: int, image_size: int) -> int:
    """The largest DCT downscale whose shorter side stays at least 6/7 of image_size (1 when none does)."""
    numerator, denominator = SCALED_SHORTER_SIDE_AT_LEAST
    shorter = min(width, height)
    for ratio in JPEG_DECODE_RATIOS:
        if shorter * denominator >= ratio * image_size * numerator:
            return ratio
    return 1


def resize_filter(width: int, height: int, image_size: int, ratio: int = 1) -> ResizeFilter:
    """The filter for a decoded image of width x height that the JPEG decoder scaled down by `ratio`."""
    longer, shorter = max(width, height), min(width, height)
    if longer < 2 * image_size:
        return "bilinear"
    # After a DCT downscale (itself a box filter), a second box blurs more than the triangle: measured 4.6 gray
    # levels from the reference on a 4032x3024 phone photo, 1.9 with the triangle, whose cost is small beside
    # the decode of such a photo.
    if longer < 3 * image_size and shorter >= image_size and ratio == 1:
        return "area"
    return "antialias"


def scaled_size(side: int, ratio: int) -> int:
    return -(-side // ratio)  # libjpeg rounds a scaled dimension up


def plan_decode(width: int, height: int, jpeg: bool, image_size: int) -> DecodePlan:
    ratio = jpeg_ratio(width, height, image_size) if jpeg else 1
    resize = resize_filter(scaled_size(width, ratio), scaled_size(height, ratio), image_size, ratio)
    return DecodePlan(jpeg, ratio, resize)


def plan_decode_of_file(path: str, image_size: int, head: bytes | None = None) -> DecodePlan:
    """The plan of one photo from its header: the first few KB (`head`, when the caller has read them already),
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
        return plan_decode(*jpeg_size, True, image_size)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return plan_decode(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), False, image_size)
    with Image.open(path) as image:
        width, height = image.size
        jpeg = image.format in ("JPEG", "MPO")
    return plan_decode(width, height, jpeg, image_size)


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
    """Encoded JPEG/PNG/GIF/BMP bytes -> image_size x image_size x 3 uint8 RGB, the plan made in the graph.

    The same rules as `plan_decode`, in TensorFlow, and each outcome the same `decode_with_plan`.
    """
    numerator, denominator = SCALED_SHORTER_SIDE_AT_LEAST
    ratios = (*JPEG_DECODE_RATIOS, 1)

    def filter_index(height: tf.Tensor, width: tf.Tensor, ratio: tf.Tensor) -> tf.Tensor:
        longer, shorter = tf.maximum(height, width), tf.minimum(height, width)
        area = (longer < 3 * image_size) & (shorter >= image_size) & tf.equal(ratio, 1)
        return tf.where(longer < 2 * image_size, 0, tf.where(area, 1, 2))

    def decode_jpeg() -> tf.Tensor:
        sides = tf.io.extract_jpeg_shape(encoded)[:2]
        fits = tf.reduce_min(sides) * denominator >= tf.constant(JPEG_DECODE_RATIOS) * image_size * numerator
        # Ratios are largest first: the first that fits, else the full decode after them.
        ratio_index = tf.argmax(tf.concat([tf.cast(fits, tf.int32), [1]], axis=0), output_type=tf.int32)
        ratio = tf.gather(ratios, ratio_index)
        scaled = (sides + ratio - 1) // ratio  # libjpeg rounds a scaled dimension up
        plan_index = ratio_index * len(RESIZE_FILTERS) + filter_index(scaled[0], scaled[1], ratio)
        plans = [DecodePlan(True, ratio_, resize) for ratio_ in ratios for resize in RESIZE_FILTERS]
        return tf.switch_case(plan_index, [lambda plan=plan: decode_with_plan(encoded, image_size, plan)
                                           for plan in plans])

    def decode_other() -> tf.Tensor:
        image = _decode_other(encoded)
        sides = tf.shape(image)[:2]
        return tf.switch_case(filter_index(sides[0], sides[1], tf.constant(1)),
                              [lambda resize=resize: _resize(image, image_size, resize) for resize in RESIZE_FILTERS])

    return tf.cond(tf.io.is_jpeg(encoded), decode_jpeg, decode_other)
