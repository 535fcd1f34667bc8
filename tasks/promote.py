"""Promote step: keep the new model as a version and put it into use only if it beats the model in use."""

from __future__ import annotations

import filecmp
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tuneflow.tasks.evaluate import predict_folder_split
from tuneflow.config import PromotionSettings
from tuneflow.metrics import compute_metrics
from tuneflow.model import MODEL_FILE, load_classes
from tuneflow.promotion import (
    Baseline,
    PromotionDecision,
    current_version,
    decide_promotion,
    models_dir,
    point_current_at,
    store_version,
)
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel

BASELINE_PREDICTIONS_FILE = "current_model_predictions.csv"


def score_current_model(data_root: Path, dataset: PreparedDataset, classes: list[str], run_dir: Path) -> Baseline | None:
    """The model in use, re-evaluated on this run's validation images when it knows the same classes."""
    version = current_version(data_root)
    if version is None:
        return None
    version_dir = models_dir(data_root) / version
    current_classes = load_classes(version_dir)
    if sorted(current_classes) != sorted(classes):
        return Baseline(version=version, classes=current_classes, accuracy=None)
    predictions = predict_folder_split(version_dir, dataset.root, "val")
    predictions_path = run_dir / BASELINE_PREDICTIONS_FILE
    predictions.to_csv(predictions_path, index=False)
    accuracy = compute_metrics(predictions, current_classes).accuracy
    return Baseline(version=version, classes=current_classes, accuracy=accuracy, predictions_path=predictions_path)


def promote_trained_model(
    trained: TrainedModel,
    evaluation: EvalResult,
    dataset: PreparedDataset,
    settings: PromotionSettings,
    data_root: Path,
    run_dir: Path,
) -> PromotionDecision:
    """Store the model as version <run id>; switch models/current to it if it is at least as good (or forced)."""
    version = run_dir.name
    baseline = score_current_model(data_root, dataset, trained.classes, run_dir)
    version_dir = models_dir(data_root) / version
    # A resumed run (resume_run_id) may have stored this very model before it was interrupted: reuse it.
    # Any other model under an existing version name makes store_version refuse, naming the folder.
    if not (version_dir.is_dir() and filecmp.cmp(version_dir / MODEL_FILE, trained.model_path, shallow=False)):
        version_dir = store_version(
            trained.model_path.parent,
            data_root,
            version,
            {"run_dir": str(run_dir), "accuracy": evaluation.accuracy, "classes": trained.classes},
        )
    promoted, reason = decide_promotion(
        version, evaluation.accuracy, trained.classes, baseline, settings, evaluation.num_images
    )
    if promoted:
        point_current_at(data_root, version)
    return PromotionDecision(
        promoted=promoted,
        reason=reason,
        version=version,
        version_dir=version_dir,
        accuracy=evaluation.accuracy,
        baseline=baseline,
        margin=settings.margin,
        forced=settings.force,
    )


@task(name="promote-model")
def promote(
    trained: TrainedModel,
    evaluation: EvalResult,
    dataset: PreparedDataset,
    settings: PromotionSettings,
    data_root: Path,
    run_dir: Path,
) -> PromotionDecision:
    """Keep the new model as a version and make it current if it is at least as good as the model in use."""
    decision = promote_trained_model(trained, evaluation, dataset, settings, data_root, run_dir)
    get_run_logger().info(decision.summary)
    return decision
