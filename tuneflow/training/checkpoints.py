"""What a run leaves behind epoch by epoch so it can resume: checkpoints, the state file, history.csv and
TensorBoard's logs, written by one Keras callback."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import keras

from tuneflow.atomic_files import atomic_destination, write_json_atomically
from tuneflow.events import Emit, EpochFinished, Progress
from tuneflow.training.phases import Phase

HISTORY_FILE = "history.csv"
STATE_FILE = "state.json"
# TensorBoard's event files (`tensorboard --logdir data/runs`): epoch scalars of every phase.
TENSORBOARD_DIR = "tensorboard"
# Progress events per epoch: enough for a progress bar that moves, few enough to keep the logs readable.
PROGRESS_EVENTS_PER_EPOCH = 10


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
            self.emit(Progress(epochs_done=round(done, 3), total_epochs=self.total_epochs))

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        row = {"epoch": epoch + 1, "phase": self.phase.name, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": round(seconds, 2)}
        row.pop("learning_rate", None)
        if self.chief:
            append_history_row(self.history_path, row)
        with atomic_destination(epoch_checkpoint(self.checkpoint_dir, epoch + 1)) as partial:
            self.model.save_weights(partial)
        write_json_atomically(self.checkpoint_dir / STATE_FILE, {"epochs_done": epoch + 1, "phase": self.phase.name})
        epoch_checkpoint(self.checkpoint_dir, epoch - 1).unlink(missing_ok=True)
        self.emit(EpochFinished(**row, total_epochs=self.total_epochs))


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


def read_epochs_done(checkpoint_dir: Path) -> int:
    state = checkpoint_dir / STATE_FILE
    if not state.exists():
        return 0
    epochs_done = int(json.loads(state.read_text())["epochs_done"])
    return epochs_done if epoch_checkpoint(checkpoint_dir, epochs_done).exists() else 0
