"""Train step: fine-tune ResNet50 in a separate process, its progress streamed into the Prefect run.

tuneflow.training.process runs and supervises the process (and stops it whenever this step ends early); this
task turns its events into log lines and a progress artifact.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from tuneflow.config import TrainingSettings
from tuneflow.records import PreparedDataset, TrainedModel
from tuneflow.training.worker import TrainingJob
from tuneflow.training.process import describe_event, run_training_process


@task(name="fine-tune")
def fine_tune(
    dataset: PreparedDataset,
    settings: TrainingSettings,
    weights_path: Path | None,
    seed: int,
    run_dir: Path,
    decoded_store: Path | None = None,
) -> TrainedModel:
    """Fine-tune ResNet50 in its own process; log each epoch and move a progress artifact while it trains."""
    logger = get_run_logger()
    progress_id = create_progress_artifact(progress=0.0, key="training-progress", description=f"training {run_dir.name}")

    def on_event(event: dict) -> None:
        message = describe_event(event)
        if message:
            level = {"output": logging.DEBUG, "notice": logging.WARNING}.get(event["event"], logging.INFO)
            logger.log(level, message)
        if event["event"] in {"progress", "epoch"}:
            done = event.get("epochs_done", event.get("epoch", 0))
            update_progress_artifact(progress_id, progress=min(100.0, 100.0 * done / event["total_epochs"]))

    timeout = settings.timeout_minutes * 60 if settings.timeout_minutes else None
    return run_training_process(
        TrainingJob(dataset=dataset, settings=settings, weights_path=weights_path, seed=seed, run_dir=run_dir,
                    decoded_store=decoded_store),
        on_event,
        timeout_seconds=timeout,
    )
