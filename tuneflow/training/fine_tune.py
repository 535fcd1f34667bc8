"""Fine-tuning ResNet50, the Keras transfer-learning way, resumable epoch by epoch.

Phase "head" trains only the new head on the frozen base; phase "fine-tune" unfreezes the base (all of it or its
top stages) at a low learning rate with BatchNorm kept in inference mode. From random weights there is nothing to
protect, so one phase "full" trains everything from the first step.

One machine trains with model.fit (several GPUs under MirroredStrategy); several machines (TF_CONFIG) train under
MultiWorkerMirroredStrategy with TensorFlow's custom training loop, since Keras 3's fit fails there. Both report
each epoch through the same callback.

This module runs inside the training process (tuneflow.training.worker); it reports through an `emit` callback.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import keras

from tuneflow.atomic_files import write_json_atomically
from tuneflow.config import TrainingSettings
from tuneflow.events import Compiled, Emit, PlannedPhase, Resumed, TrainingStarted
from tuneflow.imaging.pipeline import list_split, make_input_pipeline
from tuneflow.records import PreparedDataset, TrainedModel
from tuneflow.storage import RUN_CACHE_FOLDER, RUN_CHECKPOINTS_FOLDER, RUN_WORKERS_FOLDER
from tuneflow.training.across_machines import agree_on_epochs_done, fit_across_machines
from tuneflow.training.checkpoints import (
    HISTORY_FILE,
    EpochCheckpoint,
    epoch_checkpoint,
    read_epochs_done,
    tensorboard_logs,
    truncate_history,
)
from tuneflow.training.devices import (
    applied_jit_compile,
    choose_jit_compile,
    cluster_size,
    configure_devices,
    read_tf_config,
)
from tuneflow.training.model import build_classifier, save_classifier
from tuneflow.training.phases import make_optimizer, plan_phases, set_trainable_stages

RESULT_FILE = "trained.json"


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
    work_dir = run_dir if setup.is_chief else run_dir / RUN_WORKERS_FOLDER / str(setup.worker_index)
    checkpoint_dir = work_dir / RUN_CHECKPOINTS_FOLDER
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    history_path = work_dir / HISTORY_FILE

    # Across machines the photos are decoded before training starts: every machine then reads one file list, and
    # the first epoch holds no Python step that a machine's dataset could not run.
    common = dict(num_classes=len(classes), image_size=settings.image_size, batch_size=settings.batch_size, seed=seed,
                  emit=emit, cache_dir=decoded_store or work_dir / RUN_CACHE_FOLDER,
                  decode_in_first_epoch=not across_machines)
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
    emit(TrainingStarted(
        devices=setup.devices, replicas=setup.replicas, precision=setup.precision, workers=setup.workers,
        worker_index=setup.worker_index, train_images=len(train_paths), val_images=len(val_paths), classes=classes,
        weights=str(weights_path) if weights_path else "random initialisation", resumed_from_epoch=resumed_from,
        total_epochs=total_epochs,
        phases=[PlannedPhase(name=phase.name, first_epoch=phase.first_epoch, epochs=phase.epochs) for phase in phases],
    ))

    jit = choose_jit_compile(settings.jit_compile, setup.gpus, across_machines)
    xla_applied, xla_reason = False, jit.reason
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
                jit_compile=jit.wanted,
            )
            # Built here, eagerly: left to fit(), the optimizer creates its slot variables inside the traced train
            # step, where each of ResNet50's ~430 costs ~20 ms: 10 of the 38 s the first step took on a 2-core CPU.
            # A resumed run needs them built anyway to restore the checkpoint's optimizer state into.
            model.optimizer.build(model.trainable_variables)
        xla_applied, xla_reason = applied_jit_compile(model, jit, across_machines)
        emit(Compiled(phase=phase.name, precision=setup.precision, xla_applied=xla_applied, reason=xla_reason,
                      warning=(jit.wanted or jit.warning) and not xla_applied))
        if epochs_done > phase.first_epoch or (epochs_done == phase.first_epoch and epochs_done == resumed_from > 0):
            # Mid-phase this restores the optimizer too; at a phase boundary Keras skips the old optimizer's
            # state (it has other variables) and the new phase starts its optimizer afresh, as uninterrupted.
            model.load_weights(epoch_checkpoint(checkpoint_dir, epochs_done))
            emit(Resumed(epochs_done=epochs_done, phase=phase.name))
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
    shutil.rmtree(work_dir / RUN_CACHE_FOLDER, ignore_errors=True)
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
        xla_applied=xla_applied,
        xla_reason=xla_reason,
    )
    write_json_atomically(work_dir / RESULT_FILE, result.model_dump(mode="json"))
    return result
