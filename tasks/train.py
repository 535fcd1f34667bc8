"""Train step: fine-tune ResNet50 on the prepared dataset, the Keras transfer-learning way.

Phase 1 trains only the new head on the frozen base; phase 2 (optional) unfreezes the base at a low learning
rate with BatchNorm kept in inference mode. From random weights ("none") there is nothing to protect, so the
whole network trains from the first step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from tasks.prepare import PreparedDataset
from tuneflow.config import TrainingSettings
from tuneflow.model import build_classifier, decode_image, save_classifier

HISTORY_FILE = "history.csv"
# Decoded images are cached in memory below this size, on disk in the run folder above it.
MEMORY_CACHE_LIMIT_BYTES = 2 * 1024**3


class TrainedModel(BaseModel):
    """Where the trained model and its history were written, and how training went."""

    model_path: Path
    classes: list[str]
    history_path: Path
    epochs_run: int
    train_images: int
    seconds: float
    images_per_second: float


def list_split(root: Path, split: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """File paths and class indices of one split, in a stable order."""
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / split / name).iterdir() if p.is_file())
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    return paths, labels


def make_input_pipeline(
    paths: list[str],
    labels: list[int],
    num_classes: int,
    image_size: int,
    batch_size: int,
    seed: int,
    cache_dir: Path,
    shuffle: bool,
) -> tf.data.Dataset:
    """Parallel decode + resize, decoded images cached once, seeded shuffle every epoch, batch, prefetch."""
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(
        lambda path, label: (decode_image(tf.io.read_file(path), image_size), tf.one_hot(label, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    decoded_bytes = len(paths) * image_size * image_size * 3
    if decoded_bytes <= MEMORY_CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        dataset = dataset.cache(str(cache_dir / "decoded"))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    return dataset.map(lambda images, y: (tf.cast(images, tf.float32), y)).prefetch(tf.data.AUTOTUNE)


class EpochLog(keras.callbacks.Callback):
    """One log line per finished epoch, so progress shows in the Prefect run's logs."""

    def __init__(self, phase: str, log: Callable[[str], None]):
        super().__init__()
        self.phase = phase
        self.log = log
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = ", ".join(f"{key} {value:.4f}" for key, value in sorted((logs or {}).items()))
        self.log(f"{self.phase} epoch {epoch + 1}: {values} ({time.perf_counter() - self.started:.1f} s)")


def fine_tune_model(
    dataset: PreparedDataset,
    settings: TrainingSettings,
    weights_path: Path | None,
    seed: int,
    run_dir: Path,
    log: Callable[[str], None] = logging.getLogger(__name__).info,
) -> TrainedModel:
    """Train the classifier on dataset.root/train, validating on dataset.root/val; save it into run_dir."""
    keras.utils.set_random_seed(seed)
    classes = dataset.classes
    train_paths, train_labels = list_split(dataset.root, "train", classes)
    val_paths, val_labels = list_split(dataset.root, "val", classes)
    pipeline = dict(num_classes=len(classes), image_size=settings.image_size, batch_size=settings.batch_size, seed=seed)
    train_data = make_input_pipeline(train_paths, train_labels, cache_dir=run_dir / "cache" / "train", shuffle=True, **pipeline)
    val_data = make_input_pipeline(val_paths, val_labels, cache_dir=run_dir / "cache" / "val", shuffle=False, **pipeline)

    model, base = build_classifier(len(classes), settings.image_size, weights_path, settings.dropout, seed)
    log(
        f"training ResNet50 on {len(train_paths)} images in {len(classes)} classes, validating on "
        f"{len(val_paths)}; weights: {weights_path or 'random initialisation'}; {settings.image_size} px"
    )
    phases = [("head" if weights_path else "full", settings.learning_rate, settings.epochs, weights_path is None)]
    if weights_path is not None and settings.fine_tune_epochs > 0:
        phases.append(("fine-tune", settings.fine_tune_learning_rate, settings.fine_tune_epochs, True))

    histories: list[pd.DataFrame] = []
    epochs_done = 0
    started = time.perf_counter()
    for phase, learning_rate, epochs, base_trainable in phases:
        base.trainable = base_trainable
        # Recompiling after changing `trainable` is what makes Keras pick up the new set of trained weights.
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        history = model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=epochs_done,
            epochs=epochs_done + epochs,
            verbose=0,
            callbacks=[EpochLog(phase, log)],
        )
        frame = pd.DataFrame(history.history)
        frame.insert(0, "epoch", range(epochs_done + 1, epochs_done + 1 + len(frame)))
        frame.insert(1, "phase", phase)
        histories.append(frame)
        epochs_done += epochs
    seconds = time.perf_counter() - started

    history_path = run_dir / HISTORY_FILE
    pd.concat(histories, ignore_index=True).to_csv(history_path, index=False)
    model_path = save_classifier(model, classes, run_dir)
    return TrainedModel(
        model_path=model_path,
        classes=classes,
        history_path=history_path,
        epochs_run=epochs_done,
        train_images=len(train_paths),
        seconds=round(seconds, 2),
        images_per_second=round(len(train_paths) * epochs_done / seconds, 2),
    )


@task(name="fine-tune")
def fine_tune(
    dataset: PreparedDataset, settings: TrainingSettings, weights_path: Path | None, seed: int, run_dir: Path
) -> TrainedModel:
    """Fine-tune ResNet50 on the prepared dataset and save model.keras into the run folder."""
    return fine_tune_model(dataset, settings, weights_path, seed, run_dir, log=get_run_logger().info)
