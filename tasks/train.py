"""Train step: fine-tune ResNet50 in a separate process, its progress streamed into the Prefect run.

tuneflow.training.process runs and supervises the process (and stops it whenever this step ends early); this
task turns its events into log lines and a progress artifact.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tuneflow.config import TrainingSettings
from tuneflow.events import Compiled, EpochFinished, Notice, Output, Progress, ReceivedEvent, UnreadableEvent
from tuneflow.records import PreparedDataset, TrainedModel
from tuneflow.tasks.dashboard import ArtifactKeys, ProgressBar, keys_of_run
from tuneflow.tasks.results import REUSED_ON_RETRY
from tuneflow.training.worker import TrainingJob
from tuneflow.training.process import describe_event, run_training_process
from tuneflow.training.time_limit import TrainingTimeLimit


def log_event(logger: logging.Logger | logging.LoggerAdapter, event: ReceivedEvent) -> None:
    """One line in the run's log for the events worth one; a warning for a notice or a line no event could be read
    from, so that a newer or broken training process shows up there instead of stopping the run."""
    message = describe_event(event)
    if message:
        match event:
            case Output():
                level = logging.DEBUG
            case Notice() | UnreadableEvent() | Compiled(warning=True):
                level = logging.WARNING
            case _:
                level = logging.INFO
        logger.log(level, message)


@task(name="fine-tune", cache_policy=REUSED_ON_RETRY, persist_result=True)
def fine_tune(
    dataset: PreparedDataset,
    settings: TrainingSettings,
    weights_path: Path | None,
    seed: int,
    run_dir: Path,
    decoded_store: Path | None = None,
    keys: ArtifactKeys | None = None,
) -> TrainedModel:
    """Fine-tune ResNet50 in its own process; log each epoch and move a progress artifact while it trains."""
    logger = get_run_logger()
    progress = ProgressBar(keys_of_run(keys).key("training-progress"), "training progress bar")
    progress.update(0.0, description=f"training {run_dir.name}")

    def on_event(event: ReceivedEvent) -> None:
        log_event(logger, event)
        match event:
            case Progress(epochs_done=done, total_epochs=total) | EpochFinished(epoch=done, total_epochs=total):
                progress.update(min(100.0, 100.0 * done / total))

    time_limit = TrainingTimeLimit(settings, train_images=sum(dataset.counts["train"].values()))
    logger.info(time_limit.describe_start())
    return run_training_process(
        TrainingJob(dataset=dataset, settings=settings, weights_path=weights_path, seed=seed, run_dir=run_dir,
                    decoded_store=decoded_store),
        on_event,
        time_limit=time_limit,
    )
