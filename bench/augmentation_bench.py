"""Benchmark (not a test): where the flip-and-zoom augmentation should run, so that XLA can compile the training
step (Keras' RandomZoom cannot be compiled and turned XLA off for the whole model). Two candidates:

- in the tf.data pipeline, vectorised over each batch after the cache read: ImageProjectiveTransform on the
  uint8 batch, seeded per batch (stateless), so the model holds no augmentation at all;
- inside the model, from ops XLA compiles (tuneflow.training.augmentation.FlipAndZoom: row and column gathers),
  on the training device, left out of the saved model.

    python bench/augmentation_bench.py [--image-size 224] [--batch 64] [--train-size 64] [--train-steps 10]

Prints, side by side in one run: CPU milliseconds per image of the augmentation alone (Keras' RandomFlip +
RandomZoom as the baseline), the images/s the input pipeline feeds on later epochs with and without it, and the
later-epoch training rate (fit on the decoded photos of the realistic mix, every layer trainable, XLA as
jit_compile=auto chooses) without augmentation, with it in the pipeline and with it in the model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tuneflow.dataset.photo_mix import REAL_PHOTO_MIX, write_photo_mix  # noqa: E402
from tuneflow.dataset.sample import SAMPLE_CLASSES  # noqa: E402
from tuneflow.imaging.pipeline import list_split, make_input_pipeline  # noqa: E402
from tuneflow.training.augmentation import FlipAndZoom  # noqa: E402
from tuneflow.training.model import build_classifier  # noqa: E402

ZOOM = 0.2


def augment_batch(images: tf.Tensor, seed: tf.Tensor, zoom: float = ZOOM) -> tf.Tensor:
    """The pipeline candidate: flip half of a uint8 batch and zoom each image by [1 - zoom, 1 + zoom] about its
    centre (reflected edges, bilinear: what RandomZoom computes), stateless from a per-batch seed."""
    flip_seed, zoom_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images = tf.image.stateless_random_flip_left_right(images, flip_seed)
    height, width = images.shape[1], images.shape[2]
    zooms = tf.random.stateless_uniform([tf.shape(images)[0], 1], zoom_seed, 1 - zoom, 1 + zoom)
    zeros = tf.zeros_like(zooms)
    transforms = tf.concat([zooms, zeros, (width - 1) / 2 * (1 - zooms), zeros, zooms,
                            (height - 1) / 2 * (1 - zooms), zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[height, width], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")


def augmented_in_pipeline(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Each batch augmented in parallel map calls, seeded: another sequence every epoch, the same every run."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    pairs = tf.data.Dataset.zip((dataset, seeds))
    return pairs.map(lambda batch, pair: (augment_batch(batch[0], pair), batch[1]),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def per_image_ms(function, batch: int, repeats: int = 5) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) per image, after one warm-up call."""
    function()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        function()
    return ((time.perf_counter() - started) / repeats / batch * 1e3,
            (time.process_time() - cpu_started) / repeats / batch * 1e3)


def augmentation_alone(size: int, batch: int) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(0)
    uint8 = tf.constant(rng.integers(0, 256, (batch, size, size, 3)).astype("uint8"))
    floats = tf.cast(uint8, tf.float32)
    keras_layers = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0), keras.layers.RandomZoom(ZOOM, seed=0)])
    ours = FlipAndZoom(zoom=ZOOM, seed=0)
    in_pipeline = tf.function(augment_batch)
    seed = tf.constant([1, 2], tf.int64)
    candidates = {
        "Keras RandomFlip + RandomZoom (baseline, blocks XLA)": tf.function(lambda: keras_layers(floats, training=True)),
        "pipeline: ImageProjectiveTransform on uint8": lambda: in_pipeline(uint8, seed),
        "model: FlipAndZoom, no XLA": tf.function(lambda: ours(floats, training=True)),
        "model: FlipAndZoom, XLA": tf.function(lambda: ours(floats, training=True), jit_compile=True),
    }
    return {name: per_image_ms(lambda f=function: np.asarray(f()), batch) for name, function in candidates.items()}


def epoch_rate(dataset: tf.data.Dataset, images: int, epochs: int = 3) -> float:
    """Later-epoch images/s the pipeline feeds (the decoding pass already done), median of `epochs` passes."""
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for batch, _ in dataset:
            batch.numpy()
        seconds.append(time.perf_counter() - started)
    return images / statistics.median(seconds)


def training_rate(dataset: tf.data.Dataset, classes: int, size: int, steps: int, augment_in_model: bool) -> float:
    """Later-epoch training images/s: every layer trainable, XLA as auto chooses it here (off on a CPU)."""
    keras.utils.set_random_seed(0)
    model, _ = build_classifier(classes, size, None, 0.2, 0, horizontal_flip=augment_in_model,
                                zoom=ZOOM if augment_in_model else 0.0)
    gpus = bool(tf.config.list_physical_devices("GPU"))
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=gpus)
    model.optimizer.build(model.trainable_variables)
    repeated = dataset.repeat()
    model.fit(repeated, steps_per_epoch=2, epochs=1, verbose=0)  # tracing, compilation, the first batches
    started = time.perf_counter()
    model.fit(repeated, steps_per_epoch=steps, epochs=1, verbose=0)
    batch = next(iter(dataset))[0].shape[0]
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224, help="pixels of the augmentation-alone timing")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=64, help="pixels of the pipeline and training timings")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=64, help="photos of the realistic mix per class")
    parser.add_argument("--root", default="data/bench")
    options = parser.parse_args()

    print(f"augmentation alone, {options.image_size} px, batch {options.batch} (ms per image: wall / CPU):")
    alone = augmentation_alone(options.image_size, options.batch)
    baseline_cpu = alone["Keras RandomFlip + RandomZoom (baseline, blocks XLA)"][1]
    for name, (wall, cpu) in alone.items():
        print(f"  {name:55s} {wall:6.2f} / {cpu:6.2f}   CPU {cpu / baseline_cpu:4.2f}x the baseline")

    root = write_photo_mix(Path(options.root) / "photos-real", SAMPLE_CLASSES, options.per_class, REAL_PHOTO_MIX)
    classes = list(SAMPLE_CLASSES)
    paths, labels = list_split(root, "train", classes)
    plain = make_input_pipeline(paths, labels, len(classes), options.train_size, options.train_batch, seed=0,
                                cache_dir=Path(options.root) / "augmentation-cache", shuffle=True)
    with_augmentation = augmented_in_pipeline(plain, seed=0)
    print(f"\ninput pipeline, later epochs, {len(paths)} photos at {options.train_size} px, batch "
          f"{options.train_batch} (images/s it feeds):")
    fed_plain, fed_augmented = epoch_rate(plain, len(paths)), epoch_rate(with_augmentation, len(paths))
    print(f"  without augmentation        {fed_plain:8.1f}")
    print(f"  augmented in the pipeline   {fed_augmented:8.1f}   {fed_augmented / fed_plain:4.2f}x")

    print(f"\ntraining, later epochs, every layer trainable, {options.train_steps} steps (images/s):")
    none = training_rate(plain, len(classes), options.train_size, options.train_steps, augment_in_model=False)
    pipeline = training_rate(with_augmentation, len(classes), options.train_size, options.train_steps, False)
    in_model = training_rate(plain, len(classes), options.train_size, options.train_steps, augment_in_model=True)
    print(f"  no augmentation             {none:8.1f}")
    print(f"  augmented in the pipeline   {pipeline:8.1f}   {pipeline / none:4.2f}x")
    print(f"  augmented in the model      {in_model:8.1f}   {in_model / none:4.2f}x")


if __name__ == "__main__":
    main()
