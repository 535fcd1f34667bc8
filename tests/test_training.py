"""Fine-tuning by the book, in its own process: phases, resume after a kill, timeouts, distribution strategies."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from tasks.train import TrainingFailed, run_training_process
from tuneflow.config import TrainingSettings
from tuneflow.model import ResNet50Preprocess, build_classifier, load_classifier
from tuneflow.train_worker import TrainingJob

TINY = dict(image_size=32, batch_size=8, lr_schedule="constant")


def test_preprocessing_inside_the_model_is_resnet50_preprocess_input():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(ResNet50Preprocess()(pixels)), expected, rtol=1e-6)
    # caffe style: BGR order, ImageNet means subtracted, no scaling
    np.testing.assert_allclose(expected[..., 0], pixels[..., 2] - 103.939, rtol=1e-5)


def test_unknown_weights_file_layout_is_explained(tmp_path):
    not_resnet = tmp_path / "other.weights.h5"
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    small.save_weights(not_resnet)
    with pytest.raises(ValueError, match="does not fit ResNet50 without its top"):
        build_classifier(3, 32, not_resnet, 0.2, 0)


@pytest.fixture(scope="module")
def two_phase_run(tiny_dataset, resnet50_weights_file, tmp_path_factory):
    """One head epoch and one fine-tune epoch from a pretrained weights file, in this process."""
    from tuneflow.training import train_classifier

    run_dir = tmp_path_factory.mktemp("two-phase")
    settings = TrainingSettings(weights=str(resnet50_weights_file), epochs=1, fine_tune_epochs=1, **TINY)
    result = train_classifier(tiny_dataset, settings, resnet50_weights_file, seed=0, run_dir=run_dir)
    return run_dir, result


def base_of(weights: Path, image_size: int = 32) -> keras.Model:
    """The ResNet50 base of a classifier checkpoint."""
    model, base = build_classifier(3, image_size, None, 0.2, 0)
    model.load_weights(weights)
    return base


def initial_base(weights_file: Path) -> keras.Model:
    """The ResNet50 base as the weights file gave it, before any training."""
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.load_weights(weights_file)
    return base


@pytest.mark.slow
def test_phase_one_leaves_the_base_unchanged(two_phase_run, resnet50_weights_file):
    run_dir, _ = two_phase_run
    initial = initial_base(resnet50_weights_file)
    after_head = base_of(run_dir / "checkpoints" / "after-head.weights.h5")
    for before, after in zip(initial.weights, after_head.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after), err_msg=before.path)


@pytest.mark.slow
def test_phase_two_trains_the_base_but_not_batchnorm_statistics(two_phase_run, resnet50_weights_file):
    run_dir, _ = two_phase_run
    initial = initial_base(resnet50_weights_file)
    final = base_of(run_dir / "checkpoints" / "after-fine-tune.weights.h5")
    moving = [(b, a) for b, a in zip(initial.weights, final.weights) if "moving_" in b.path]
    assert len(moving) == 2 * 53  # ResNet50 has 53 BatchNormalization layers
    for before, after in moving:
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after), err_msg=before.path)
    kernels = [(b, a) for b, a in zip(initial.weights, final.weights) if b.path.endswith("kernel")]
    changed = sum(not np.array_equal(np.asarray(b), np.asarray(a)) for b, a in kernels)
    assert changed == len(kernels), f"only {changed} of {len(kernels)} conv kernels were fine-tuned"


@pytest.mark.slow
def test_saved_model_predicts_like_the_trained_one_on_raw_pixels(two_phase_run):
    run_dir, result = two_phase_run
    trained, _ = build_classifier(3, 32, None, 0.2, 0)
    trained.load_weights(run_dir / "checkpoints" / "after-fine-tune.weights.h5")
    reloaded, classes = load_classifier(run_dir)
    pixels = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(pixels, verbose=0), trained.predict(pixels, verbose=0), atol=1e-6)
    assert classes == result.classes == ["apple_pie", "pizza", "sashimi"]
    history = pd.read_csv(result.history_path)
    assert history["phase"].tolist() == ["head", "fine-tune"] and history["epoch"].tolist() == [1, 2]


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_epoch(tiny_dataset, tmp_path):
    settings = TrainingSettings(weights="none", epochs=2, **TINY)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path)

    def kill_after_first_epoch(event):
        if event["event"] == "epoch" and event["epoch"] == 1:
            os.killpg(int((tmp_path / "train.pid").read_text()), signal.SIGKILL)

    with pytest.raises(TrainingFailed, match="exited with code -9"):
        run_training_process(job, kill_after_first_epoch)
    assert not (tmp_path / "model.keras").exists()

    events = []
    result = run_training_process(job, events.append)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert (tmp_path / "model.keras").is_file()


@pytest.mark.slow
def test_timeout_stops_the_training_process(prefect_server, tiny_archive, tmp_path):
    from flows.retrain import retrain
    from tuneflow.config import RetrainConfig

    config = RetrainConfig(
        source=str(tiny_archive),
        data_root=tmp_path,
        training=TrainingSettings(weights="none", epochs=50, timeout_minutes=0.25, **TINY),
    )
    with pytest.raises(TimeoutError, match="training exceeded its timeout of 15 s"):
        retrain(config)
    (run_dir,) = (tmp_path / "runs").iterdir()
    pid = int((run_dir / "train.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(tiny_dataset, tmp_path):
    settings = TrainingSettings(weights="none", epochs=1, **TINY)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path, cpu_replicas=2)
    result = run_training_process(job, lambda event: None)
    assert result.replicas == 2 and len(result.devices) == 2
    assert load_classifier(tmp_path)[1] == ["apple_pie", "pizza", "sashimi"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_several_machines_fail_loudly_instead_of_deep_inside_keras(tiny_dataset, tmp_path):
    """MultiWorkerMirroredStrategy + Keras 3 fit is broken upstream (keras-team/keras#20585): say so up front."""
    settings = TrainingSettings(weights="none", epochs=1, **TINY)
    job = TrainingJob(dataset=tiny_dataset, settings=settings, weights_path=None, seed=0, run_dir=tmp_path)
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    with pytest.raises(TrainingFailed, match=r"TF_CONFIG describes several machines.*keras-team/keras#20585"):
        run_training_process(job, lambda event: None, env={"TF_CONFIG": tf_config})


@pytest.mark.slow
def test_gpu_check_reports_devices_precision_and_speed(capsys):
    from tuneflow.cli import main

    assert main(["gpu-check", "--image-size", "32", "--batch-size", "4", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "GPU: none found (training runs on the CPU)" in printed
    assert "precision: float32" in printed
    speed = float(printed.split("batch 4: ")[1].split(" images/s")[0])
    assert speed > 0
