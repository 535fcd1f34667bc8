"""Evaluate step: Prefect's view of tuneflow.evaluation.evaluate (predictions.csv and metrics.json in the run folder)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.evaluation.evaluate import evaluate_trained_model
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel
from tuneflow.tasks.results import REUSED_ON_RETRY


@task(name="evaluate-model", cache_policy=REUSED_ON_RETRY, persist_result=True)
def evaluate_model(
    trained: TrainedModel, dataset: PreparedDataset, archive: FetchedArchive, run_dir: Path,
    decoded_store: Path | None = None,
) -> EvalResult:
    """Predict the validation images with the saved model and compute the metrics from those predictions."""
    return evaluate_trained_model(trained, dataset, archive, run_dir, decoded_store)
