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
from tuneflow.records import TrainedModel
from tuneflow.training_process import TrainingFailed, describe_event, run_training_process
from tuneflow.config import TrainingSettings
from tuneflow.model import build_classifier, load_classifier
from tuneflow.train_worker import TrainingJob


def worker_config(workers: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def train_on_two_workers(job: TrainingJob) -> tuple[TrainedModel, list[dict], dict]:
    """The documented way: the chief's run writes train_job.json, the other machine runs the worker on that file.

    Returns the chief's result and events, and the second worker's result.
    """
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    chief_events: list[dict] = []
    job_file = job.run_dir / "train_job.json"
    job_file.unlink(missing_ok=True)
    with ThreadPoolExecutor(1) as pool:
        chief = pool.submit(run_training_process, job, chief_events.append, 600, {"TF_CONFIG": worker_config(workers, 0)})
        while not job_file.exists() and not chief.done():
            time.sleep(0.1)
        second = subprocess.run(
            [sys.executable, "-m", "tuneflow.train_worker", str(job_file)],
            env={**os.environ, "TF_CONFIG": worker_config(workers, 1)},
            capture_output=True, text=True, timeout=600,
        )
        result = chief.result()
    assert second.returncode == 0, second.stderr[-3000:]
    second_result = [json.loads(line) for line in second.stdout.splitlines() if '"done"' in line][0]["result"]
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


def epochs_trained(events: list[dict]) -> list[int]:
    return [event["epoch"] for event in events if event["event"] == "epoch"]


def test_a_training_set_smaller_than_one_batch_fails_before_waiting_for_the_other_machines(tiny_dataset, tmp_path):
    settings = TrainingSettings(weights="none", epochs=1, **{**TINY, "batch_size": 64})
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path)
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]  # the second never starts
    with pytest.raises(TrainingFailed, match="24 training images are fewer than one batch of 64.*lower batch_size"):
        run_training_process(job, lambda event: None, 120, {"TF_CONFIG": worker_config(workers, 0)})


@pytest.mark.slow
def test_multi_worker_training_with_two_processes_on_localhost_and_resuming_together(tiny_dataset, tmp_path):
    settings = TrainingSettings(weights="none", epochs=2, **TINY)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path)
    result, chief_events, second_result = train_on_two_workers(job)

    assert result.replicas == second_result["replicas"] == 2
    waiting = describe_event(next(e for e in chief_events if e["event"] == "waiting-for-workers"))
    assert "TF_CONFIG describes 2 machines" in waiting and "python -m tuneflow.train_worker" in waiting
    start = describe_event(next(e for e in chief_events if e["event"] == "start"))
    assert "(2 replica(s), worker 0 of 2 machines, float32)" in start
    assert result.epochs_run == 2 and epochs_trained(chief_events) == [1, 2]
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and history["accuracy"].between(0, 1).all()
    chief_model = assert_same_trained_weights(tmp_path)
    # ... and that is not the starting point: the second epoch moved them.
    after_first_epoch, _ = build_classifier(3, 32, None, 0.2, 0)
    after_first_epoch.load_weights(tmp_path / "checkpoints" / "epoch-0001.weights.h5")
    head_kernel = chief_model.get_layer("classes").kernel
    assert not np.allclose(np.asarray(after_first_epoch.get_layer("classes").kernel), np.asarray(head_kernel))

    # Worker 1 died while saving epoch 2: its last checkpoint is epoch 1, the chief's epoch 2. Restarted (with a
    # third epoch asked for), both go back to epoch 1, the last one they both finished.
    worker_checkpoints = tmp_path / "workers" / "1" / "checkpoints"
    (worker_checkpoints / "epoch-0002.weights.h5").unlink()
    (worker_checkpoints / "state.json").write_text(json.dumps({"epochs_done": 1, "phase": "full"}))
    longer = job.model_copy(update={"settings": settings.model_copy(update={"epochs": 3})})
    resumed, chief_events, second_result = train_on_two_workers(longer)
    assert resumed.resumed_from_epoch == second_result["resumed_from_epoch"] == 1
    assert epochs_trained(chief_events) == [2, 3]
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3]
    assert_same_trained_weights(tmp_path)
