"""Fine-tuning ResNet50, the Keras transfer-learning way, resumable epoch by epoch.

Phase "head" trains only the new head on the frozen base; phase "fine-tune" unfreezes the base (all of it or its
top stages) at a low learning rate with BatchNorm kept in inference mode. From random weights there is nothing to
protect, so one phase "full" trains everything from the first step.

One machine trains with model.fit (several GPUs under MirroredStrategy); several machines (TF_CONFIG) train under
MultiWorkerMirroredStrategy with TensorFlow's custom training loop, since Keras 3's fit fails there. Both report
each epoch through the same callback.

This module runs inside the training process (tuneflow.train_worker); it reports through an `emit` callback.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf
from pydantic import BaseModel

from tuneflow.config import TrainingSettings
from tuneflow.decoded_cache import ensure_decoded_cache, read_cached
from tuneflow.model import build_classifier, save_classifier
from tuneflow.records import PreparedDataset, TrainedModel

HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
RESULT_FILE = "trained.json"
# TensorBoard's event files (`tensorboard --logdir data/runs`): epoch scalars of every phase.
TENSORBOARD_DIR = "tensorboard"
# Decoded images, one file per photo (tuneflow.decoded_cache), when no store kept across runs is given: deleted
# when training ends.
CACHE_DIR = "cache"
# ResNet50's stages, bottom to top, by the prefix of their layer names.
RESNET50_STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")
# Progress events per epoch: enough for a progress bar that moves, few enough to keep the logs readable.
PROGRESS_EVENTS_PER_EPOCH = 10

Emit = Callable[[dict], None]


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
    drop_remainder: bool = False,
    emit: Emit = lambda event: None,
    name: str = "",
) -> tf.data.Dataset:
    """Decode every photo the store at cache_dir lacks (tuneflow.decoded_cache), then: the file list reshuffled
    every epoch (seeded), cached pixels read in parallel, batch, prefetch.

    Memory stays a few batches whatever the dataset's size: what is shuffled is the list of cache files, a few
    bytes per photo, never the decoded images.
    """
    files = ensure_decoded_cache(paths, image_size, cache_dir, emit, name=name)
    dataset = tf.data.Dataset.from_tensor_slices((files, labels))
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda file, label: (read_cached(file, image_size), tf.one_hot(label, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    # Batches stay uint8 (4x less to copy to the GPU); the model casts its input to float itself.
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    # Across machines each one reads the file list (at the same path everywhere) and keeps its share of batches.
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


class DeviceSetup(BaseModel):
    devices: list[str]
    replicas: int
    precision: str
    is_chief: bool
    worker_index: int
    workers: int  # machines training together (MultiWorkerMirroredStrategy when > 1)


def read_tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def cluster_size(tf_config: dict) -> int:
    """How many machines TF_CONFIG describes (1 without it)."""
    cluster = tf_config.get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def chief_and_index(tf_config: dict) -> tuple[bool, int]:
    """(is this process the chief?, its worker index) from TF_CONFIG; a single machine is its own chief."""
    task_spec = tf_config.get("task", {})
    kind, index = task_spec.get("type", "worker"), int(task_spec.get("index", 0))
    if "chief" in tf_config.get("cluster", {}):
        return kind == "chief", index
    return kind == "worker" and index == 0, index


def configure_devices(
    settings: TrainingSettings, cpu_replicas: int = 1, emit: Emit = lambda event: None
) -> tuple[tf.distribute.Strategy, DeviceSetup]:
    """Choose the distribution strategy and precision; must run before TensorFlow touches a device.

    TF_CONFIG describing several machines: MultiWorkerMirroredStrategy (over every GPU of each). Otherwise several
    GPUs: MirroredStrategy; else the default strategy. `cpu_replicas` > 1 splits the CPU into logical devices (to
    exercise MirroredStrategy without GPUs).
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Memory growth lets a second process (evaluation, a notebook) share the GPU instead of failing to start.
        tf.config.experimental.set_memory_growth(gpu, True)
    tf_config = read_tf_config()
    chief, index = chief_and_index(tf_config)
    if cluster_size(tf_config) > 1:
        # Creating the strategy blocks until every machine of the cluster has connected: say so, or it looks hung.
        emit({"event": "waiting-for-workers", "cluster": tf_config["cluster"], "task": tf_config.get("task", {})})
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif cpu_replicas > 1 and not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()

    precision = settings.precision
    if precision == "auto":
        capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus]
        # Tensor cores (Volta, 7.0, and newer) make float16 fast; on CPUs and older GPUs it only costs accuracy.
        precision = "mixed_float16" if capabilities and min(capabilities) >= (7, 0) else "float32"
    keras.mixed_precision.set_global_policy(precision)
    devices = [d.name for d in (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))]
    return strategy, DeviceSetup(
        devices=devices, replicas=strategy.num_replicas_in_sync, precision=precision, is_chief=chief,
        worker_index=index, workers=cluster_size(tf_config),
    )


def epoch_checkpoint(checkpoint_dir: Path, epochs_done: int) -> Path:
    return checkpoint_dir / f"epoch-{epochs_done:04d}.weights.h5"


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: a history row, the weights (with optimizer state), then the state file, in that order.

    The state file is written last and atomically, so it never claims an epoch whose weights aren't on disk. The
    previous epoch's weights are kept too: machines of a multi-worker run that died while saving may be one epoch
    apart, and they resume together from the older one.
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
        partial = self.checkpoint_dir / "partial.weights.h5"
        self.model.save_weights(partial)
        partial.replace(epoch_checkpoint(self.checkpoint_dir, epoch + 1))
        write_json_atomically(self.checkpoint_dir / STATE_FILE, {"epochs_done": epoch + 1, "phase": self.phase.name})
        epoch_checkpoint(self.checkpoint_dir, epoch - 1).unlink(missing_ok=True)
        self.emit({"event": "epoch", **row, "total_epochs": self.total_epochs})


HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


def tensorboard_logs(work_dir: Path) -> keras.callbacks.Callback:
    """Keras' TensorBoard callback writing each epoch's loss, accuracy and learning rate (training and validation).

    One per phase, into the same folder: TensorBoard reads every event file of a folder as one run, and epochs are
    numbered across phases, so the fine-tune phase continues the head phase's curves. No graph, no profiling:
    ResNet50's graph costs seconds to write and tells a user nothing.
    """
    return keras.callbacks.TensorBoard(log_dir=str(work_dir / TENSORBOARD_DIR), update_freq="epoch",
                                       write_graph=False, profile_batch=0)


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
    if not state.exists():
        return 0
    epochs_done = int(json.loads(state.read_text())["epochs_done"])
    return epochs_done if epoch_checkpoint(checkpoint_dir, epochs_done).exists() else 0


def agree_on_epochs_done(strategy: tf.distribute.Strategy, epochs_done: int) -> int:
    """The last epoch every machine of the cluster has a checkpoint of (each one keeps its last two)."""
    per_replica = strategy.run(lambda: tf.constant([epochs_done]))
    return int(tf.reduce_min(strategy.gather(per_replica, axis=0)))


def fit_across_machines(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset,
    settings: TrainingSettings,
    steps_per_epoch: int,
    initial_epoch: int,
    epochs: int,
    callback: keras.callbacks.Callback,
) -> None:
    """What model.fit does, for MultiWorkerMirroredStrategy, where Keras 3's fit fails (keras-team/keras#20585).

    TensorFlow's own custom training loop: each replica computes its share of the global-batch loss, the optimizer
    all-reduces the gradients across machines, and loss/accuracy totals are summed across machines. The callback
    gets the calls fit would make, so checkpoints, history and progress work the same on one machine or several.
    Training batches are full and the data repeats (steps_per_epoch per epoch): a replica left with an empty batch
    would feed NaN statistics to BatchNorm.
    """
    optimizer = model.optimizer  # compiled: a LossScaleOptimizer under mixed_float16
    per_image_loss = keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing, reduction=None)
    variables = model.trainable_variables

    def totals(targets: tf.Tensor, probabilities: tf.Tensor, losses: tf.Tensor) -> tf.Tensor:
        hits = tf.equal(tf.argmax(probabilities, axis=-1), tf.argmax(targets, axis=-1))
        return tf.stack([
            tf.reduce_sum(tf.cast(losses, tf.float32)),
            tf.reduce_sum(tf.cast(hits, tf.float32)),
            tf.cast(tf.shape(targets)[0], tf.float32),
        ])

    def replica_train_step(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            losses = per_image_loss(targets, probabilities)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=settings.batch_size)
            scaled_loss = optimizer.scale_loss(loss)
        optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return totals(targets, probabilities, losses)

    def replica_val_step(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        probabilities = model(images, training=False)
        return totals(targets, probabilities, per_image_loss(targets, probabilities))

    @tf.function
    def train_step(iterator) -> tf.Tensor:
        return strategy.reduce("SUM", strategy.run(replica_train_step, args=next(iterator)), axis=None)

    @tf.function
    def val_step(batch) -> tf.Tensor:
        return strategy.reduce("SUM", strategy.run(replica_val_step, args=batch), axis=None)

    def as_logs(summed: tf.Tensor, prefix: str = "") -> dict[str, float]:
        loss_sum, hits, count = (float(v) for v in summed)
        return {f"{prefix}loss": loss_sum / max(count, 1.0), f"{prefix}accuracy": hits / max(count, 1.0)}

    train_batches = iter(strategy.experimental_distribute_dataset(train_data.repeat()))
    val_batches = strategy.experimental_distribute_dataset(val_data)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback.on_epoch_begin(epoch)
        summed = tf.zeros(3)
        for step in range(steps_per_epoch):
            summed += train_step(train_batches)
            callback.on_train_batch_end(step)
        val_summed = tf.zeros(3)
        for batch in val_batches:  # every machine runs the same number of steps; TensorFlow pads with empty batches
            val_summed += val_step(batch)
        callback.on_epoch_end(epoch, {**as_logs(summed), **as_logs(val_summed, "val_")})
    callback.on_train_end()


def train_classifier(
    dataset: PreparedDataset,
    settings: TrainingSettings,
    weights_path: Path | None,
    seed: int,
    run_dir: Path,
    emit: Emit = lambda event: None,
    cpu_replicas: int = 1,
    decoded_store: Path | None = None,
) -> TrainedModel:
    """Train on dataset.root/train, validate on dataset.root/val, resume from run_dir's last checkpoint if any.

    Decoded photos go to `decoded_store`, kept for the runs to come (the next retrain decodes only its new
    photos), or, without one, to a cache of this run's own that is deleted when training ends.

    Under TF_CONFIG with several machines every machine runs this; the chief writes into run_dir, the others into
    run_dir/workers/<index>, and all of them must see the prepared dataset at the same path.
    """
    classes = dataset.classes
    train_paths, train_labels = list_split(dataset.root, "train", classes)
    val_paths, val_labels = list_split(dataset.root, "val", classes)
    across_machines = cluster_size(read_tf_config()) > 1
    # Checked before joining the cluster, which blocks until every machine is there.
    if across_machines and len(train_paths) < settings.batch_size:
        raise ValueError(
            f"{len(train_paths)} training images are fewer than one batch of {settings.batch_size}; training across "
            "machines uses full batches only: lower batch_size"
        )
    strategy, setup = configure_devices(settings, cpu_replicas, emit)
    keras.utils.set_random_seed(seed)
    # Non-chief workers of a multi-worker run write their (identical) copies to a scratch folder.
    work_dir = run_dir if setup.is_chief else run_dir / "workers" / str(setup.worker_index)
    checkpoint_dir = work_dir / CHECKPOINT_DIR
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    history_path = work_dir / HISTORY_FILE

    common = dict(num_classes=len(classes), image_size=settings.image_size, batch_size=settings.batch_size, seed=seed,
                  emit=emit, cache_dir=decoded_store or work_dir / CACHE_DIR)
    train_data = make_input_pipeline(train_paths, train_labels, shuffle=True, drop_remainder=across_machines,
                                     name="train", **common)
    val_data = make_input_pipeline(val_paths, val_labels, shuffle=False, name="val", **common)
    steps_per_epoch = (len(train_paths) // settings.batch_size if across_machines
                       else math.ceil(len(train_paths) / settings.batch_size))

    with strategy.scope():
        model, base = build_classifier(
            len(classes), settings.image_size, weights_path, settings.dropout, seed,
            horizontal_flip=settings.horizontal_flip, zoom=settings.zoom,
        )
    phases = plan_phases(settings, pretrained=weights_path is not None)
    total_epochs = phases[-1].end_epoch
    epochs_done = read_epochs_done(checkpoint_dir)
    if across_machines:
        epochs_done = agree_on_epochs_done(strategy, epochs_done)
        if epochs_done and not epoch_checkpoint(checkpoint_dir, epochs_done).exists():
            raise RuntimeError(
                f"the machines of this run agree on resuming after epoch {epochs_done}, but "
                f"{epoch_checkpoint(checkpoint_dir, epochs_done)} is missing on worker {setup.worker_index}: "
                "start a new run (without resume_run_id)"
            )
    truncate_history(history_path, epochs_done)
    resumed_from = epochs_done
    emit({"event": "start", "devices": setup.devices, "replicas": setup.replicas, "precision": setup.precision,
          "workers": setup.workers, "worker_index": setup.worker_index,
          "train_images": len(train_paths), "val_images": len(val_paths), "classes": classes,
          "weights": str(weights_path) if weights_path else "random initialisation",
          "resumed_from_epoch": resumed_from, "total_epochs": total_epochs})

    if across_machines and settings.jit_compile:
        emit({"event": "notice", "message": "jit_compile is not applied when training across machines: the "
              "custom training loop runs its steps as plain tf.functions"})
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
            # Built here, eagerly: left to fit(), the optimizer creates its slot variables inside the traced train
            # step, where each of ResNet50's ~430 costs ~20 ms: 10 of the 38 s the first step took on a 2-core CPU.
            # A resumed run needs them built anyway to restore the checkpoint's optimizer state into.
            model.optimizer.build(model.trainable_variables)
        if epochs_done > phase.first_epoch or (epochs_done == phase.first_epoch and epochs_done == resumed_from > 0):
            # Mid-phase this restores the optimizer too; at a phase boundary Keras skips the old optimizer's
            # state (it has other variables) and the new phase starts its optimizer afresh, as uninterrupted.
            model.load_weights(epoch_checkpoint(checkpoint_dir, epochs_done))
            emit({"event": "resumed", "epochs_done": epochs_done, "phase": phase.name})
        checkpointing = EpochCheckpoint(
            phase, checkpoint_dir, history_path, setup.is_chief, emit, steps_per_epoch, total_epochs
        )
        callbacks = [checkpointing, tensorboard_logs(work_dir)]
        first_epoch = max(epochs_done, phase.first_epoch)
        if across_machines:
            with strategy.scope():
                fit_across_machines(model, strategy, train_data, val_data, settings, steps_per_epoch,
                                    first_epoch, phase.end_epoch, keras.callbacks.CallbackList(callbacks))
        else:
            model.fit(
                train_data,
                validation_data=val_data,
                initial_epoch=first_epoch,
                epochs=phase.end_epoch,
                shuffle=False,  # the input pipeline reshuffles every epoch itself; fit can't shuffle a tf.data.Dataset
                verbose=0,
                callbacks=callbacks,
            )
        epochs_done = phase.end_epoch
        model.save_weights(checkpoint_dir / f"after-{phase.name}.weights.h5")
    seconds = time.perf_counter() - started
    model_path = save_classifier(model, classes, work_dir)
    # A cache of this run's own is only for its training: gigabytes at Food-101's scale. A failed run keeps it to
    # resume; a store kept across runs stays for the next retrain (retention prunes it).
    shutil.rmtree(work_dir / CACHE_DIR, ignore_errors=True)
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
