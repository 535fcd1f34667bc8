"""Evaluation: predict every validation image with the saved model; the metrics come from those predictions.

predictions.csv holds one row per image; metrics.json is computed from that file as written, so anyone can
reproduce it from predictions.csv alone. The evaluate task (tasks/evaluate.py) calls `evaluate_trained_model`;
promotion re-scores the model in use with `predict_files` on the photos it never trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.evaluation.metrics import Metrics, compute_metrics, read_predictions
from tuneflow.training.model import load_classes, load_classifier
from tuneflow.evaluation.predict import predict_encoded
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel
from tuneflow.imaging.pipeline import list_split

PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"


def predict_folder_split(model_dir: Path, dataset_root: Path, split: str = "val") -> pd.DataFrame:
    """One row per image of a split: path, true and predicted class, confidence, correct, top-k, every probability."""
    # classes.json alone: predict_files loads the model itself, and ResNet50 takes seconds to deserialise.
    paths, _ = list_split(dataset_root, split, load_classes(model_dir))
    return predict_files(model_dir, dataset_root, [Path(p).relative_to(dataset_root).as_posix() for p in paths])


def predict_files(model_dir: Path, dataset_root: Path, names: list[str]) -> pd.DataFrame:
    """predict_folder_split's table for the given files of a prepared dataset (<split>/<class>/<file> each)."""
    model, classes = load_classifier(model_dir)
    true_classes = [name.split("/")[1] for name in names]
    unknown = sorted(set(true_classes) - set(classes))
    if unknown:
        raise ValueError(f"the model in {model_dir} does not know the classes {unknown}; it knows {classes}")
    predictions = predict_encoded(model, classes, ((name, (dataset_root / name).read_bytes()) for name in names))
    if predictions.unreadable:
        # Preparation only keeps images that decode, so this is a damaged dataset folder, not a bad photo.
        listed = ", ".join(f"{u.name} ({u.reason})" for u in predictions.unreadable[:5])
        raise ValueError(f"{len(predictions.unreadable)} images under {dataset_root} cannot be read: {listed}")
    table = predictions.table
    table.insert(1, "true_class", true_classes)
    table.insert(4, "correct", table["true_class"] == table["predicted_class"])
    return table


def write_metrics(metrics: Metrics, destination: Path, **context: dict) -> Path:
    """metrics.json: the metrics plus context (the data's provenance, how training went)."""
    destination.write_text(json.dumps({**metrics.model_dump(mode="json"), **context}, indent=2) + "\n")
    return destination


def evaluate_trained_model(
    trained: TrainedModel, dataset: PreparedDataset, archive: FetchedArchive, run_dir: Path
) -> EvalResult:
    """Write predictions.csv and metrics.json (with the data's provenance) into the run folder."""
    predictions = predict_folder_split(trained.model_path.parent, dataset.root, "val")
    predictions_path = run_dir / PREDICTIONS_FILE
    predictions.to_csv(predictions_path, index=False)
    # Read back what was written, so metrics.json is exactly what predictions.csv alone reproduces.
    metrics = compute_metrics(read_predictions(predictions_path), trained.classes)
    metrics_path = write_metrics(
        metrics,
        run_dir / METRICS_FILE,
        data=archive.model_dump(mode="json"),
        training=trained.model_dump(mode="json", exclude={"classes"}),
    )
    return EvalResult(
        accuracy=metrics.accuracy,
        num_images=metrics.num_images,
        predictions_path=predictions_path,
        metrics_path=metrics_path,
    )
