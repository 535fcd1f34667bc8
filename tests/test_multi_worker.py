"""Training across machines: two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from tests.loopback import free_port
from tests.records import TINY_TRAINING_KNOBS as TINY
from tests.records import head_only_training
from tuneflow.events import (
    EpochFinished, ReceivedEvent, TrainingDone, TrainingStarted, WaitingForWorkers, read_event_line,
)
from tuneflow.records import TrainedModel
from tuneflow.training.process import TrainingFailed, describe_event, run_training_process
from tuneflow.config import TrainingSettings
from tuneflow.training.model import build_classifier, load_classifier
from tuneflow.training.worker import TrainingJob


def worker_config(workers: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def train_on_two_workers(job: TrainingJob) -> tuple[TrainedModel, list[ReceivedEvent], TrainedModel]:
    """The documented way: the chief's run writes train_job.json, the other machine runs the worker on that file.

    Returns the chief's result and events, and the second worker's result.
    """
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    chief_events: list[ReceivedEvent] = []
    job_file = job.run_dir / "train_job.json"
    job_file.unlink(missing_ok=True)
    with ThreadPoolExecutor(1) as pool:
        chief = pool.submit(run_training_process, job, chief_events.append, 600, {"TF_CONFIG": worker_config(workers, 0)})
        while not job_file.exists() and not chief.done():
            time.sleep(0.1)
        second = subprocess.run(
            [sys.executable, "-m", "tuneflow.training.worker", str(job_file)],
            env={**os.environ, "TF_CONFIG": worker_config(workers, 1)},
            capture_output=True, text=True, timeout=600,
        )
        result = chief.result()
    assert second.returncode == 0, second.stderr[-3000:]
    events = [read_event_line(line) for line in second.stdout.splitlines()]
    second_result = next(event for event in events if isinstance(event, TrainingDone)).result
    return result, chief_events, second_result


def assert_same_trained_weights(run_dir: Path) -> keras.Model:
    """Gradients are all-reduced across the processes, so the chief and worker 1 hold the same trained weights.

    Returns the chief's model.
    """
    chief_model, classes = load_classifier(run_dir)
    worker_model, _ = load_classifier(run_dir / "workers" / "1")
    assert classes == ["apple_pie", "pizza", "sashimi"]
    for chief_weight, worker_weight in zip(chief_model.trainable_weights, worker_model.trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(chief_weight), np.asarray(worker_weight), atol=1e-6)
    return chief_model


def epochs_trained(events: list[ReceivedEvent]) -> list[int]:
    return [event.epoch for event in events if isinstance(event, EpochFinished)]


def test_a_training_set_smaller_than_one_batch_fails_before_waiting_for_the_other_machines(tiny_dataset, tmp_path):
    settings = TrainingSettings(weights="none", epochs=1, **{**TINY, "batch_size": 64})
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path)
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]  # the second never starts
    with pytest.raises(TrainingFailed, match="24 training images are fewer than one batch of 64.*lower batch_size"):
        run_training_process(job, lambda event: None, 120, {"TF_CONFIG": worker_config(workers, 0)})


def leave_checkpoints_of_a_crash(run_dir: Path, weights_file: Path) -> np.ndarray:
    """What a two-machine run leaves when worker 1 dies while saving epoch 2: the chief has finished epochs 1 and 2,
    worker 1 only epoch 1 (each machine keeps its own checkpoints). The weights of epoch 1 are the same on both, as
    all-reduced training leaves them; they come from the model training builds, saved the way training saves them.
    Returns epoch 1's head kernel.
    """
    model, _ = build_classifier(3, 32, weights_file, 0.2, 0)
    for folder, epochs in ((run_dir / "checkpoints", (1, 2)), (run_dir / "workers" / "1" / "checkpoints", (1,))):
        folder.mkdir(parents=True)
        for epoch in epochs:
            model.save_weights(folder / f"epoch-{epoch:04d}.weights.h5")
        (folder / "state.json").write_text(json.dumps({"epochs_done": epochs[-1], "phase": "head"}))
    (run_dir / "history.csv").write_text(
        "epoch,phase,loss,accuracy,val_loss,val_accuracy,seconds\n1,head,1.1,0.3,1.1,0.3,1.0\n2,head,1.0,0.4,1.1,0.3,1.0\n"
    )
    return np.asarray(model.get_layer("classes").kernel)


@pytest.mark.slow
def test_two_processes_on_localhost_resume_together_and_train_the_same_weights(tiny_dataset, resnet50_weights_file,
                                                                               tmp_path):
    """One two-process run covers both: resuming after a crash, then training epochs 2 and 3 across the machines.

    (A run from scratch on two processes traces and trains ResNet50 twice more; every step it has, waiting for the
    other machine, agreeing, training, all-reducing, saving on each, happens in this run too.)
    """
    epoch_one_head = leave_checkpoints_of_a_crash(tmp_path, resnet50_weights_file)
    settings = head_only_training(resnet50_weights_file, epochs=3)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=resnet50_weights_file, seed=0,
                      run_dir=tmp_path)
    result, chief_events, second_result = train_on_two_workers(job)

    assert result.replicas == second_result.replicas == 2
    waiting = describe_event(next(e for e in chief_events if isinstance(e, WaitingForWorkers)))
    assert "TF_CONFIG describes 2 machines" in waiting and "python -m tuneflow.training.worker" in waiting
    start = describe_event(next(e for e in chief_events if isinstance(e, TrainingStarted)))
    assert "(2 replica(s), worker 0 of 2 machines, float32)" in start
    # The chief had finished epoch 2, worker 1 only epoch 1: both go back to epoch 1, the last they both finished.
    assert result.resumed_from_epoch == second_result.resumed_from_epoch == 1
    assert result.epochs_run == 3 and epochs_trained(chief_events) == [2, 3]
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3] and history["accuracy"].between(0, 1).all()
    chief_model = assert_same_trained_weights(tmp_path)
    # ... and that is not where they started: the two epochs trained together moved the weights.
    assert not np.allclose(epoch_one_head, np.asarray(chief_model.get_layer("classes").kernel))
