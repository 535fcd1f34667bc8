"""Evaluation: predict every validation image with the saved model; the metrics come from those predictions.

predictions.csv holds one row per image; metrics.json is computed from that file as written, so anyone can
reproduce it from predictions.csv alone. The evaluate task (tasks/evaluate.py) calls `evaluate_trained_model`;
promotion re-scores the model in use with `predict_files` on the photos it never trained on.

The photos go through training's own input pipeline (tuneflow.imaging.pipeline): decoded in parallel into the
decoded store, read back in parallel and batched, so evaluation runs at the model's speed. Training has filled
the store kept across runs (data_root/cache/decoded/) with the validation photos already, so evaluating the new
model decodes nothing; the model in use, at its own image size, decodes into the same store once. Without a
store kept across runs (storage.keep_decoded_photos off), the photos are decoded into the run's own cache folder,
deleted when the step ends. The pixels are those `tuneflow predict` gives (tests/test_predict.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.evaluation.metrics import Metrics, compute_metrics, predictions_table, read_predictions
from tuneflow.imaging.pipeline import list_split, make_prediction_pipeline
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel
from tuneflow.storage import RUN_CACHE_FOLDER
from tuneflow.training.model import load_classifier

PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
# The batch predict_probabilities (tuneflow predict) uses too: the same batches give the same probabilities, to
# the last bit (a batch of another size may round differently in the convolutions).
PREDICT_BATCH_SIZE = 32


@contextmanager
def decoded_photos_store(decoded_store: Path | None, run_dir: Path) -> Iterator[Path]:
    """The store kept across runs, or else the run's own cache folder, removed when the block ends."""
    if decoded_store is not None:
        yield decoded_store
        return
    own = run_dir / RUN_CACHE_FOLDER
    try:
        yield own
    finally:
        shutil.rmtree(own, ignore_errors=True)


def predict_prepared(
    model: keras.Model, classes: list[str], dataset_root: Path, names: list[str], decoded_store: Path
) -> pd.DataFrame:
    """One row per file of a prepared dataset (names: <split>/<class>/<file>): path, true and predicted class,
    confidence, correct, top-k, every probability."""
    true_classes = [name.split("/")[1] for name in names]
    unknown = sorted(set(true_classes) - set(classes))
    if unknown:
        raise ValueError(f"the model does not know the classes {unknown} of {dataset_root}; it knows {classes}")
    if not names:
        return predictions_table([], np.zeros((0, len(classes)), dtype=np.float32), classes, [])
    # Preparation only keeps photos that decode: one that does not makes this fail naming it (a damaged dataset
    # folder, not a bad photo).
    batches = make_prediction_pipeline([str(dataset_root / name) for name in names], int(model.input_shape[1]),
                                       PREDICT_BATCH_SIZE, decoded_store, name="evaluation")
    probabilities = model.predict(batches, verbose=0)
    return predictions_table(names, probabilities, classes, true_classes)


def predict_files(model_dir: Path, dataset_root: Path, names: list[str], decoded_store: Path) -> pd.DataFrame:
    """predict_prepared with the model saved in model_dir (a run folder or a model version)."""
    model, classes = load_classifier(model_dir)
    return predict_prepared(model, classes, dataset_root, names, decoded_store)


def predict_folder_split(model_dir: Path, dataset_root: Path, decoded_store: Path, split: str = "val") -> pd.DataFrame:
    """predict_prepared for every image of a split."""
    model, classes = load_classifier(model_dir)
    paths, _ = list_split(dataset_root, split, classes)
    names = [Path(path).relative_to(dataset_root).as_posix() for path in paths]
    return predict_prepared(model, classes, dataset_root, names, decoded_store)


def write_metrics(metrics: Metrics, destination: Path, **context: dict) -> Path:
    """metrics.json: the metrics plus context (the data's provenance, how training went)."""
    destination.write_text(json.dumps({**metrics.model_dump(mode="json"), **context}, indent=2) + "\n")
    return destination


def evaluate_trained_model(
    trained: TrainedModel, dataset: PreparedDataset, archive: FetchedArchive, run_dir: Path,
    decoded_store: Path | None = None,
) -> EvalResult:
    """Write predictions.csv and metrics.json (with the data's provenance) into the run folder."""
    with decoded_photos_store(decoded_store, run_dir) as store:
        predictions = predict_folder_split(trained.model_path.parent, dataset.root, store, "val")
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
