"""The evaluate step: predictions.csv and metrics.json of a run, from one load of its model."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from tests.conftest import TINY_CLASSES
from tests.records import training_record
from tuneflow.evaluation.evaluate import evaluate_trained_model
from tuneflow.evaluation.metrics import read_predictions
from tuneflow.fetch.archives import FetchedArchive


@pytest.mark.slow  # loads a real (32-px, untrained) ResNet50
def test_evaluating_a_run_loads_its_model_once(tiny_model, tiny_dataset, tmp_path, monkeypatch):
    """model.keras is deserialised once per evaluation: it was loaded a second time only to read the class list,
    which classes.json holds. A spy counts Keras' loads and lets each one through."""
    real_load, loaded = keras.models.load_model, []
    monkeypatch.setattr(keras.models, "load_model", lambda path, *a, **k: loaded.append(path) or real_load(path, *a, **k))
    trained = training_record(model_path=tiny_model / "model.keras", classes=list(TINY_CLASSES),
                              history_path=tmp_path / "history.csv")
    archive = FetchedArchive(path=tmp_path / "dataset.zip", source="dataset.zip", md5="0" * 32, size_bytes=1)

    result = evaluate_trained_model(trained, tiny_dataset, archive, tmp_path)

    assert [Path(path) for path in loaded] == [tiny_model / "model.keras"]
    predictions = read_predictions(result.predictions_path)
    assert result.num_images == len(predictions) == sum(tiny_dataset.counts["val"].values())
    assert set(predictions["true_class"]) == set(TINY_CLASSES)
    assert json.loads(result.metrics_path.read_text())["accuracy"] == result.accuracy
