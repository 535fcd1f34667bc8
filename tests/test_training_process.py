"""Training in its own process: resume after a kill (under MirroredStrategy over two logical CPUs), a timeout."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest

from tuneflow.training_process import TrainingFailed, run_training_process
from tests.records import TINY_TRAINING_KNOBS as TINY
from tuneflow.config import TrainingSettings
from tuneflow.model import load_classifier
from tuneflow.train_worker import TrainingJob


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_epoch_even_on_two_replicas(tiny_dataset, tmp_path):
    """Killed after its first epoch on one device, resumed on two replicas, as when a worker with two GPUs picks
    the run up: MirroredStrategy over two logical CPUs, restoring a checkpoint written on one device."""
    settings = TrainingSettings(weights="none", epochs=2, **TINY)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path)

    def kill_after_first_epoch(event):
        if event["event"] == "epoch" and event["epoch"] == 1:
            os.killpg(int((tmp_path / "train.pid").read_text()), signal.SIGKILL)

    with pytest.raises(TrainingFailed, match="exited with code -9"):
        run_training_process(job, kill_after_first_epoch)
    assert not (tmp_path / "model.keras").exists()

    events = []
    result = run_training_process(job.model_copy(update={"cpu_replicas": 2}), events.append)
    assert result.replicas == 2 and len(result.devices) == 2
    assert result.resumed_from_epoch == 1 and result.epochs_run == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert load_classifier(tmp_path)[1] == ["apple_pie", "pizza", "sashimi"]


@pytest.mark.slow
def test_timeout_stops_the_training_process(prefect_server, tiny_archive, tmp_path):
    from tuneflow.flows.retrain import retrain
    from tuneflow.config import RetrainConfig

    config = RetrainConfig(
        source=str(tiny_archive),
        data_root=tmp_path,
        training=TrainingSettings(weights="none", epochs=50, timeout_minutes=0.1, **TINY),
    )
    with pytest.raises(TimeoutError, match="training exceeded its timeout of 6 s"):
        retrain(config)
    (run_dir,) = (tmp_path / "runs").iterdir()
    pid = int((run_dir / "train.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
