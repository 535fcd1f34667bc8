"""Evaluate step: predict every validation image with the saved model; metrics come from those predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from pydantic import BaseModel

from tasks.fetch import FetchedArchive
from tasks.prepare import PreparedDataset
from tasks.train import TrainedModel, list_split
from tuneflow.model import load_classifier, load_images, predict_probabilities

PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
# Images read per predict() call: bounds memory on large validation sets.
PREDICT_CHUNK = 256


class EvalResult(BaseModel):
    """Headline numbers and where the full predictions and metrics are."""

    accuracy: float
    num_images: int
    predictions_path: Path
    metrics_path: Path


def probability_column(class_name: str) -> str:
    return f"p_{class_name}"


def predict_folder_split(model_dir: Path, dataset_root: Path, split: str = "val") -> pd.DataFrame:
    """One row per image of a split: path, true and predicted class, confidence, correct, every probability."""
    model, classes = load_classifier(model_dir)
    image_size = int(model.input_shape[1])
    paths, labels = list_split(dataset_root, split, classes)
    probabilities = np.concatenate(
        [
            predict_probabilities(model, load_images([Path(p) for p in paths[i : i + PREDICT_CHUNK]], image_size))
            for i in range(0, len(paths), PREDICT_CHUNK)
        ]
    )
    predicted = probabilities.argmax(axis=1)
    table = pd.DataFrame(
        {
            "path": [str(Path(p).relative_to(dataset_root)) for p in paths],
            "true_class": [classes[i] for i in labels],
            "predicted_class": [classes[i] for i in predicted],
            "confidence": probabilities.max(axis=1),
            "correct": predicted == np.array(labels),
        }
    )
    for index, name in enumerate(classes):
        table[probability_column(name)] = probabilities[:, index]
    return table


def compute_metrics(predictions: pd.DataFrame, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix, from the predictions table."""
    confusion = pd.crosstab(
        pd.Categorical(predictions["true_class"], categories=classes),
        pd.Categorical(predictions["predicted_class"], categories=classes),
        dropna=False,
    )
    per_class = {}
    for name in classes:
        true_positive = int(confusion.loc[name, name])
        predicted_total = int(confusion[name].sum())
        support = int(confusion.loc[name].sum())
        precision = true_positive / predicted_total if predicted_total else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    correct = int((predictions["true_class"] == predictions["predicted_class"]).sum())
    return {
        "accuracy": correct / len(predictions) if len(predictions) else 0.0,
        "num_images": int(len(predictions)),
        "num_correct": correct,
        "classes": classes,
        "per_class": per_class,
        "confusion_matrix": {"rows_true_columns_predicted": classes, "counts": confusion.to_numpy().tolist()},
    }


def evaluate_trained_model(
    trained: TrainedModel, dataset: PreparedDataset, archive: FetchedArchive, run_dir: Path
) -> EvalResult:
    """Write predictions.csv and metrics.json (with the data's provenance) into the run folder."""
    predictions = predict_folder_split(trained.model_path.parent, dataset.root, "val")
    predictions_path = run_dir / PREDICTIONS_FILE
    predictions.to_csv(predictions_path, index=False)
    metrics = compute_metrics(predictions, trained.classes)
    metrics["data"] = archive.model_dump(mode="json")
    metrics["training"] = trained.model_dump(mode="json", exclude={"classes"})
    metrics_path = run_dir / METRICS_FILE
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return EvalResult(
        accuracy=metrics["accuracy"],
        num_images=metrics["num_images"],
        predictions_path=predictions_path,
        metrics_path=metrics_path,
    )


@task(name="evaluate-model")
def evaluate_model(
    trained: TrainedModel, dataset: PreparedDataset, archive: FetchedArchive, run_dir: Path
) -> EvalResult:
    """Predict the validation images with the saved model and compute the metrics from those predictions."""
    return evaluate_trained_model(trained, dataset, archive, run_dir)
