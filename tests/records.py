"""Records the report and promotion tests need without running the steps that make them, and tiny training knobs."""

from __future__ import annotations

from pathlib import Path

from tuneflow.config import TrainingSettings
from tuneflow.records import TrainedModel

# Training settings small enough for a test on a 2-core CPU: 32-px images, a constant learning rate.
TINY_TRAINING_KNOBS = dict(image_size=32, batch_size=8, lr_schedule="constant")


def head_only_training(weights_file: Path, **changes) -> TrainingSettings:
    """Tiny training from a weights file with no fine-tune phase: only the new head trains, on the frozen base.

    For tests of what happens around training (resuming, processes, machines, cancelling), not of what trains:
    the first step traces in ~7 s at 32 px on 2 cores, against 24-32 s with all of ResNet50 trainable (as
    weights="none" trains it; `make demo` and the field check train that way end to end).
    """
    return TrainingSettings(weights=str(weights_file), fine_tune_epochs=0, **{**TINY_TRAINING_KNOBS, **changes})


def training_record(**values):
    """A TrainedModel for tests that need one without training: the given values, neutral ones for the rest.

    Only fields TrainedModel has are passed, so this keeps working as training records more (devices, precision).
    """
    neutral = {"epochs_run": 1, "train_images": 1, "seconds": 1.0, "images_per_second": 1.0,
               "train_images_per_second": 1.0, "resumed_from_epoch": 0, "devices": ["CPU:0"], "replicas": 1,
               "precision": "float32"}
    return TrainedModel(**{k: v for k, v in {**neutral, **values}.items() if k in TrainedModel.model_fields})
