"""Training in its own process: resume after a kill (under MirroredStrategy over two logical CPUs), a timeout."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from tuneflow.training.process import TrainingFailed, run_training_process
from tests.records import TINY_TRAINING_KNOBS as TINY
from tests.records import head_only_training
from tuneflow.config import TrainingSettings
from tuneflow.events import Compiled, EpochFinished, PhotosDecoded, PhotosDecoding, PhotosReused
from tuneflow.imaging.decoded_cache import cached_file_bytes
from tuneflow.imaging.decoded_layout import CACHE_SUFFIX
from tuneflow.training.model import load_classifier
from tuneflow.training.worker import TrainingJob


DECODED_STORE_EVENTS = (PhotosReused, PhotosDecoding, PhotosDecoded)


def kill(run_dir) -> None:
    os.killpg(int((run_dir / "train.pid").read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_epoch_even_on_two_replicas(
    tiny_dataset, resnet50_weights_file, tmp_path
):
    """Killed while decoding photos into its disk cache, then after its first epoch on one device, then resumed on
    two replicas, as when a worker with two GPUs picks the run up: MirroredStrategy over two logical CPUs,
    restoring a checkpoint written on one device."""
    settings = head_only_training(resnet50_weights_file, epochs=2)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=resnet50_weights_file, seed=0,
                      run_dir=tmp_path)
    cache = tmp_path / "cache"  # no store kept across runs: the run's own, deleted when training ends
    photos = sum(sum(counts.values()) for counts in tiny_dataset.counts.values())

    def cached_photos() -> list[Path]:
        return list(cache.glob(f"*/*/*{CACHE_SUFFIX}"))

    def kill_while_caching(event):
        # At the start of the decoding pass: the pipeline takes a moment to build, so the kill lands before the
        # pass completes (tests/test_decoded_cache.py leaves a half-written cache deterministically).
        if isinstance(event, PhotosDecoding):
            kill(tmp_path)

    with pytest.raises(TrainingFailed, match="exited with code -9"):
        run_training_process(job, kill_while_caching)
    # Killed mid-pass: no photo half-written under its name (each is renamed into place once written whole).
    assert cache.is_dir() and len(cached_photos()) < photos
    assert {file.stat().st_size for file in cached_photos()} <= {cached_file_bytes(settings.image_size)}

    def kill_after_first_epoch(event):
        if isinstance(event, EpochFinished) and event.epoch == 1:
            kill(tmp_path)

    events = []
    with pytest.raises(TrainingFailed, match="exited with code -9"):
        run_training_process(job, lambda event: (events.append(event), kill_after_first_epoch(event)))
    assert not (tmp_path / "model.keras").exists()
    assert isinstance([e for e in events if isinstance(e, DECODED_STORE_EVENTS)][-1], PhotosDecoded)  # the rest
    assert len(cached_photos()) == photos

    events = []
    result = run_training_process(job.model_copy(update={"cpu_replicas": 2}), events.append)
    assert result.replicas == 2 and len(result.devices) == 2
    assert result.resumed_from_epoch == 1 and result.epochs_run == 2
    assert [e.epoch for e in events if isinstance(e, EpochFinished)] == [2]
    # All there: nothing decoded again.
    assert {type(e) for e in events if isinstance(e, DECODED_STORE_EVENTS)} == {PhotosReused}
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert load_classifier(tmp_path)[1] == ["apple_pie", "pizza", "sashimi"]
    assert not (tmp_path / "cache").exists()  # training ended: the decoded photos are gone


@pytest.mark.slow
def test_timeout_stops_the_training_process_and_a_second_run_prepares_nothing(prefect_server, tiny_archive, tmp_path):
    """Two runs of the retrain flow on one archive, each stopped by its training timeout: the second one's photos
    are the first one's files (hard links into data_root/cache/prepared), not extracted again."""
    from tuneflow.flows.retrain import retrain
    from tuneflow.config import RetrainConfig

    config = RetrainConfig(
        source=str(tiny_archive),
        data_root=tmp_path,
        training=TrainingSettings(weights="none", epochs=50, timeout_minutes=0.1, **TINY),
    )
    for _ in range(2):
        with pytest.raises(TimeoutError, match="training exceeded its time limit of 6 s"):
            retrain(config)
    first, second = sorted((tmp_path / "runs").iterdir())
    for run_dir in (first, second):
        pid = int((run_dir / "train.pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    records = [json.loads((run_dir / "dataset" / "prepared.json").read_text()) for run_dir in (first, second)]
    assert records[0]["reused_from"] is None and records[1]["reused_from"] == records[0]["cache_entry"]
    assert Path(records[0]["cache_entry"]).parent == tmp_path / "cache" / "prepared"
    photos = sorted(path.relative_to(first / "dataset") for path in (first / "dataset").rglob("*.jpg"))
    assert len(photos) == 30
    for photo in photos:  # the same file on disk: nothing was extracted or copied for the second run
        assert os.path.samefile(first / "dataset" / photo, second / "dataset" / photo)


@pytest.mark.slow
def test_xla_requested_with_the_default_augmentation_really_compiles_and_is_recorded(
    tiny_dataset, resnet50_weights_file, tmp_path
):
    """Flip and 20 % zoom as by default, XLA requested: the compiled model has jit_compile on, TensorFlow's own
    log in train.log says XLA compiled the step, and trained.json records it (Keras' RandomZoom used to turn it
    off while config.json and the report said "jit compile: True")."""
    settings = head_only_training(resnet50_weights_file, epochs=1, jit_compile=True)
    assert (settings.horizontal_flip, settings.zoom) == (TrainingSettings().horizontal_flip, TrainingSettings().zoom)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=resnet50_weights_file, seed=0,
                      run_dir=tmp_path)
    events = []
    result = run_training_process(job, events.append)
    [compiled] = [event for event in events if isinstance(event, Compiled)]
    assert compiled.xla_applied and not compiled.warning
    assert "Compiled cluster using XLA" in (tmp_path / "train.log").read_text()
    recorded = json.loads((tmp_path / "trained.json").read_text())
    assert recorded["xla_applied"] is True and result.xla_applied and recorded["precision"] == "float32"
