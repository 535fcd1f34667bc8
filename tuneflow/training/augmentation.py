"""The notebook's augmentation (a left-right flip, a zoom in or out of up to 20 %) from ops XLA compiles.

Keras' RandomZoom samples through ImageProjectiveTransform, which XLA cannot compile, so it sets
`supports_jit = False`, and one such layer made compile(jit_compile=True) fall back to no XLA for the whole
model. Here each output row and column is a bilinear blend of two source rows and columns, picked by gathers
along one axis at a time: plain gathers and arithmetic that XLA fuses on a GPU, written in keras.ops so the
training step runs under any Keras backend (bench/model_step.py). It matches RandomZoom's bilinear, reflected
zoom to 0.007 gray levels (tests/test_augmentation.py), and the flip is folded into the column sampling.
Measured against moving it into the tf.data pipeline instead: docs/benchmarks.md (Augmentation).

Training-only: idle in predict() and left out of the saved model (tuneflow.training.model.inference_model).
"""

from __future__ import annotations

import keras
from keras import ops


def source_coordinates(zooms, size: int, flips=None):
    """For each image (rows of `zooms`, shape [batch, 1]) and output coordinate 0..size-1: the source coordinate a
    zoom about the centre reads, mirrored where `flips` is true, reflected back into the image at its edges (the
    half-sample reflection of RandomZoom's fill_mode="reflect": ... c b a | a b c ... )."""
    centre = (size - 1) / 2
    source = zooms * (ops.arange(size, dtype="float32")[None, :] - centre) + centre
    if flips is not None:
        source = ops.where(flips, (size - 1) - source, source)
    period = 2.0 * size
    folded = ops.mod(source + 0.5, period)
    folded = ops.where(folded >= size, period - folded, folded) - 0.5
    return ops.clip(folded, 0.0, size - 1.0)


def resample_rows(images, coordinates):
    """Each image's rows (axis 1) read at fractional `coordinates` ([batch, rows]), blending the two nearest."""
    batch, rows = ops.shape(images)[0], images.shape[1]
    below = ops.floor(coordinates)
    weight = ops.reshape(coordinates - below, (batch, rows) + (1,) * (len(images.shape) - 2))
    below = ops.cast(below, "int32")
    above = ops.minimum(below + 1, rows - 1)
    # One gather of whole rows over the batch flattened: row r of image b is row b * rows + r.
    offsets = ops.arange(batch, dtype="int32")[:, None] * rows
    flat = ops.reshape(images, (-1, *images.shape[2:]))

    def gather(indices):
        return ops.reshape(ops.take(flat, ops.reshape(indices + offsets, (-1,)), axis=0), ops.shape(images))

    return gather(below) * (1.0 - weight) + gather(above) * weight


def flip_and_zoom(images, zooms, flips):
    """images [batch, height, width, channels] zoomed by `zooms` (> 1 zooms out) about their centres and
    mirrored left-right where `flips`, both [batch, 1]."""
    height, width = images.shape[1], images.shape[2]
    resampled = resample_rows(images, source_coordinates(zooms, height))
    columns_first = ops.transpose(resampled, (0, 2, 1, 3))
    resampled = resample_rows(columns_first, source_coordinates(zooms, width, flips))
    return ops.transpose(resampled, (0, 2, 1, 3))


@keras.saving.register_keras_serializable(package="tuneflow")
class FlipAndZoom(keras.layers.Layer):
    """Random left-right flips (half of the images) and zooms by a factor drawn from [1 - zoom, 1 + zoom], seeded.

    Computes in float32 whatever the mixed-precision policy: pixels 0-255 blended in bfloat16 would be off by up
    to a gray level.
    """

    def __init__(self, horizontal_flip: bool = True, zoom: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        if not 0 <= zoom < 1:
            raise ValueError(f"zoom {zoom}: give a share of the image in [0, 1), e.g. 0.2 for up to 20 %")
        self.horizontal_flip, self.zoom, self.seed = horizontal_flip, zoom, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or (not self.horizontal_flip and self.zoom == 0):
            return images
        images = ops.cast(images, "float32")
        shape = (ops.shape(images)[0], 1)
        zooms = keras.random.uniform(shape, 1.0 - self.zoom, 1.0 + self.zoom, seed=self.seed_generator)
        flips = keras.random.uniform(shape, seed=self.seed_generator) < (0.5 if self.horizontal_flip else 0.0)
        return flip_and_zoom(images, zooms, flips)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "horizontal_flip": self.horizontal_flip, "zoom": self.zoom, "seed": self.seed}
