"""Fine-tuning ResNet50, the Keras transfer-learning way, resumable epoch by epoch.

Phase "head" trains only the new head on the frozen base; phase "fine-tune" unfreezes the base (all of it or its
top stages) at a low learning rate with BatchNorm kept in inference mode. From random weights there is nothing to
protect, so one phase "full" trains everything from the first step.

This module runs inside the training process (tuneflow.train_worker); it reports through an `emit` callback.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf
from pydantic import BaseModel

from tasks.prepare import PreparedDataset
from tuneflow.config import TrainingSettings
from tuneflow.model import build_classifier, decode_image, save_classifier

HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.weights.h5"
STATE_FILE = "state.json"
RESULT_FILE = "trained.json"
# Decoded images are cached in memory below this size, on disk in the run folder above it.
MEMORY_CACHE_LIMIT_BYTES = 2 * 1024**3
# ResNet50's stages, bottom to top, by the prefix of their layer names.
RESNET50_STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")
# Progress events per epoch: enough for a progress bar that moves, few enough to keep the logs readable.
PROGRESS_EVENTS_PER_EPOCH = 10

Emit = Callable[[dict], None]


class TrainedModel(BaseModel):
    """Where the trained model and its history were written, and how training went."""

    model_path: Path
    classes: list[str]
    history_path: Path
    epochs_run: int
    resumed_from_epoch: int
    train_images: int
    seconds: float
    train_images_per_second: float
    devices: list[str]
    replicas: int
    precision: str


class Phase(BaseModel):
    name: str
    first_epoch: int  # 0-based, global across phases
    epochs: int
    learning_rate: float
    trainable_stages: tuple[str, ...]  # base stages trained in this phase

    @property
    def end_epoch(self) -> int:
        return self.first_epoch + self.epochs


def plan_phases(settings: TrainingSettings, pretrained: bool) -> list[Phase]:
    """The phases of a run, with global epoch numbers, so a resumed run knows where each one starts."""
    if not pretrained:
        return [Phase(name="full", first_epoch=0, epochs=settings.epochs, learning_rate=settings.learning_rate,
                      trainable_stages=RESNET50_STAGES)]
    phases = [Phase(name="head", first_epoch=0, epochs=settings.epochs, learning_rate=settings.learning_rate,
                    trainable_stages=())]
    if settings.unfreeze != "none" and settings.fine_tune_epochs > 0:
        top = RESNET50_STAGES if settings.unfreeze == "all" else RESNET50_STAGES[-int(settings.unfreeze):]
        phases.append(Phase(name="fine-tune", first_epoch=settings.epochs, epochs=settings.fine_tune_epochs,
                            learning_rate=settings.fine_tune_learning_rate, trainable_stages=top))
    return phases


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
    """Parallel decode + resize, decoded images cached once, seeded shuffle every epoch, batch, prefetch.

    The cache sits right after decoding, so epochs after the first read uint8 pixels and never touch a JPEG.
    """
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(
        lambda path, label: (decode_image(tf.io.read_file(path), image_size), tf.one_hot(label, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if len(paths) * image_size * image_size * 3 <= MEMORY_CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        dataset = dataset.cache(str(cache_dir / "decoded"))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda images, y: (tf.cast(images, tf.float32), y))
    options = tf.data.Options()
    # Several workers each read the whole file list and keep every n-th element: no shared filesystem needed.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def set_trainable_stages(base: keras.Model, stages: tuple[str, ...], freeze_batchnorm: bool) -> None:
    """Train only the layers of the given ResNet50 stages.

    With pretrained weights, BatchNorm layers stay frozen, which in Keras also means inference mode: updating
    their statistics on a few thousand images wrecks the pretrained features. (Calling the base with
    training=False is not enough under Keras 3: measured, the moving statistics still moved.)
    """
    base.trainable = bool(stages)
    for layer in base.layers:
        in_stage = bool(stages) and layer.name.split("_")[0] in stages
        is_batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = in_stage and not (is_batchnorm and freeze_batchnorm)


def make_optimizer(settings: TrainingSettings, learning_rate: float, decay_steps: int) -> keras.optimizers.Optimizer:
    schedule = (
        keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, decay_steps))
        if settings.lr_schedule == "cosine"
        else learning_rate
    )
    if settings.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    if settings.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=1e-4)
    return keras.optimizers.Adam(schedule)


class MultiWorkerUnsupportedError(RuntimeError):
    """Several machines were asked for, which Keras 3's fit can't do yet."""


class DeviceSetup(BaseModel):
    devices: list[str]
    replicas: int
    precision: str
    is_chief: bool
    worker_index: int


def chief_and_index() -> tuple[bool, int]:
    """(is this process the chief?, its worker index) from TF_CONFIG; a single machine is its own chief."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task_spec = tf_config.get("task", {})
    kind, index = task_spec.get("type", "worker"), int(task_spec.get("index", 0))
    if "chief" in tf_config.get("cluster", {}):
        return kind == "chief", index
    return kind == "worker" and index == 0, index


def configure_devices(settings: TrainingSettings, cpu_replicas: int = 1) -> tuple[tf.distribute.Strategy, DeviceSetup]:
    """Choose the distribution strategy and precision; must run before TensorFlow touches a device.

    Several GPUs: MirroredStrategy. Otherwise the default strategy. TF_CONFIG with several workers fails loudly:
    MultiWorkerMirroredStrategy doesn't work with Keras 3's fit (measured with TF 2.21 / Keras 3.15). `cpu_replicas` > 1 splits the CPU into logical devices (to exercise MirroredStrategy
    without GPUs).
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Memory growth lets a second process (evaluation, a notebook) share the GPU instead of failing to start.
        tf.config.experimental.set_memory_growth(gpu, True)
    if cpu_replicas > 1 and not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
        raise MultiWorkerUnsupportedError(
            "TF_CONFIG describes several machines, but Keras 3's model.fit cannot train under "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585: it fails reducing per-replica values across "
            "workers). Train on one machine (all its GPUs are used through MirroredStrategy), or unset TF_CONFIG."
        )
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    elif cpu_replicas > 1 and not gpus:
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    else:
        strategy = tf.distribute.get_strategy()

    precision = settings.precision
    if precision == "auto":
        capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus]
        # Tensor cores (Volta, 7.0, and newer) make float16 fast; on CPUs and older GPUs it only costs accuracy.
        precision = "mixed_float16" if capabilities and min(capabilities) >= (7, 0) else "float32"
    keras.mixed_precision.set_global_policy(precision)
    chief, index = chief_and_index()
    devices = [d.name for d in (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))]
    return strategy, DeviceSetup(
        devices=devices, replicas=strategy.num_replicas_in_sync, precision=precision, is_chief=chief, worker_index=index
    )


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: a history row, the weights (with optimizer state), then the state file, in that order.

    The state file is written last and atomically, so it never claims an epoch whose weights aren't on disk.
    """

    def __init__(self, phase: Phase, checkpoint_dir: Path, history_path: Path, chief: bool, emit: Emit,
                 steps_per_epoch: int, total_epochs: int):
        super().__init__()
        self.phase, self.checkpoint_dir, self.history_path = phase, checkpoint_dir, history_path
        self.chief, self.emit, self.steps_per_epoch, self.total_epochs = chief, emit, steps_per_epoch, total_epochs
        self.started = 0.0
        self.epoch = 0
        self.every = max(1, steps_per_epoch // PROGRESS_EVENTS_PER_EPOCH)

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.epoch = time.perf_counter(), epoch

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            done = self.epoch + (batch + 1) / self.steps_per_epoch
            self.emit({"event": "progress", "epochs_done": round(done, 3), "total_epochs": self.total_epochs})

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        row = {"epoch": epoch + 1, "phase": self.phase.name, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": round(seconds, 2)}
        row.pop("learning_rate", None)
        if self.chief:
            append_history_row(self.history_path, row)
        # Every worker saves (the save is collective under MultiWorkerMirroredStrategy); only the chief's counts.
        partial = self.checkpoint_dir / "partial.weights.h5"
        self.model.save_weights(partial)
        partial.replace(self.checkpoint_dir / LAST_CHECKPOINT)
        if self.chief:
            write_json_atomically(self.checkpoint_dir / STATE_FILE, {"epochs_done": epoch + 1, "phase": self.phase.name})
        self.emit({"event": "epoch", **row, "total_epochs": self.total_epochs})


HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


def append_history_row(path: Path, row: dict) -> None:
    new_file = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def truncate_history(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs after the last checkpoint: they will be trained again."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= epochs_done]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_json_atomically(path: Path, value: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


def read_epochs_done(checkpoint_dir: Path) -> int:
    state = checkpoint_dir / STATE_FILE
    if state.exists() and (checkpoint_dir / LAST_CHECKPOINT).exists():
        return int(json.loads(state.read_text())["epochs_done"])
    return 0


def train_classifier(
    dataset: PreparedDataset,
    settings: TrainingSettings,
    weights_path: Path | None,
    seed: int,
    run_dir: Path,
    emit: Emit = lambda event: None,
    cpu_replicas: int = 1,
) -> TrainedModel:
    """Train on dataset.root/train, validate on dataset.root/val, resume from run_dir's last checkpoint if any."""
    strategy, setup = configure_devices(settings, cpu_replicas)
    keras.utils.set_random_seed(seed)
    # Non-chief workers of a multi-worker run write their (identical) copies to a scratch folder.
    work_dir = run_dir if setup.is_chief else run_dir / "workers" / str(setup.worker_index)
    checkpoint_dir = work_dir / CHECKPOINT_DIR
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    history_path = work_dir / HISTORY_FILE

    classes = dataset.classes
    train_paths, train_labels = list_split(dataset.root, "train", classes)
    val_paths, val_labels = list_split(dataset.root, "val", classes)
    common = dict(num_classes=len(classes), image_size=settings.image_size, batch_size=settings.batch_size, seed=seed)
    train_data = make_input_pipeline(train_paths, train_labels, cache_dir=work_dir / "cache" / "train", shuffle=True, **common)
    val_data = make_input_pipeline(val_paths, val_labels, cache_dir=work_dir / "cache" / "val", shuffle=False, **common)
    steps_per_epoch = math.ceil(len(train_paths) / settings.batch_size)

    with strategy.scope():
        model, base = build_classifier(
            len(classes), settings.image_size, weights_path, settings.dropout, seed,
            horizontal_flip=settings.horizontal_flip, zoom=settings.zoom,
        )
    phases = plan_phases(settings, pretrained=weights_path is not None)
    total_epochs = phases[-1].end_epoch
    epochs_done = read_epochs_done(checkpoint_dir)
    truncate_history(history_path, epochs_done)
    resumed_from = epochs_done
    emit({"event": "start", "devices": setup.devices, "replicas": setup.replicas, "precision": setup.precision,
          "train_images": len(train_paths), "val_images": len(val_paths), "classes": classes,
          "weights": str(weights_path) if weights_path else "random initialisation",
          "resumed_from_epoch": resumed_from, "total_epochs": total_epochs})

    started = time.perf_counter()
    for phase in phases:
        if epochs_done >= phase.end_epoch:
            continue
        set_trainable_stages(base, phase.trainable_stages, freeze_batchnorm=weights_path is not None)
        with strategy.scope():
            # Recompiling after changing `trainable` is what makes Keras train the new set of weights.
            model.compile(
                optimizer=make_optimizer(settings, phase.learning_rate, steps_per_epoch * phase.epochs),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
                metrics=["accuracy"],
                jit_compile=settings.jit_compile,
            )
        if epochs_done > phase.first_epoch or (epochs_done == phase.first_epoch and epochs_done == resumed_from > 0):
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
            # Mid-phase this restores the optimizer too; at a phase boundary Keras skips the old optimizer's
            # state (it has other variables) and the new phase starts its optimizer afresh, as uninterrupted.
            model.load_weights(checkpoint_dir / LAST_CHECKPOINT)
            emit({"event": "resumed", "epochs_done": epochs_done, "phase": phase.name})
        model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=max(epochs_done, phase.first_epoch),
            epochs=phase.end_epoch,
            shuffle=False,  # the input pipeline reshuffles every epoch itself; fit can't shuffle a tf.data.Dataset
            verbose=0,
            callbacks=[EpochCheckpoint(phase, checkpoint_dir, history_path, setup.is_chief, emit, steps_per_epoch, total_epochs)],
        )
        epochs_done = phase.end_epoch
        model.save_weights(checkpoint_dir / f"after-{phase.name}.weights.h5")
    seconds = time.perf_counter() - started

    model_path = save_classifier(model, classes, work_dir)
    epochs_trained = total_epochs - resumed_from
    result = TrainedModel(
        model_path=model_path,
        classes=classes,
        history_path=history_path,
        epochs_run=total_epochs,
        resumed_from_epoch=resumed_from,
        train_images=len(train_paths),
        seconds=round(seconds, 2),
        train_images_per_second=round(len(train_paths) * epochs_trained / seconds, 2) if epochs_trained else 0.0,
        devices=setup.devices,
        replicas=setup.replicas,
        precision=setup.precision,
    )
    write_json_atomically(work_dir / RESULT_FILE, result.model_dump(mode="json"))
    return result
