"""Shared fixtures: an isolated Prefect test server and tiny generated datasets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before Prefect or Keras is imported anywhere: keep their state out of the user's home and off the network.
_STATE = Path(tempfile.mkdtemp(prefix="tuneflow-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["KERAS_HOME"] = str(_STATE / "keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

import pytest  # noqa: E402

from tuneflow.sample import write_sample_dataset  # noqa: E402

TINY_CLASSES = ("apple_pie", "pizza", "sashimi")
# The longest test files, longest first. `make test` hands whole files to two pytest-xdist workers in collection
# order (--no-loadscope-reorder); a long file handed out last would leave one worker idle at the end.
LONGEST_FILES_FIRST = (
    "test_training_process.py",
    "test_deployments.py",
    "test_flow.py",
    "test_multi_worker.py",
    "test_training.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep pytest's order


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server (SQLite) for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    """A Food-101-layout zip: 3 classes x 10 drawn 32-px images."""
    return write_sample_dataset(
        tmp_path_factory.mktemp("tiny") / "dataset.zip", images_per_class=10, image_size=32, classes=TINY_CLASSES
    )


@pytest.fixture(scope="session")
def tiny_dataset(tiny_archive, tmp_path_factory):
    """The tiny archive split into train/val folders (8/2 per class)."""
    from tuneflow.dataset.prepare import prepare_dataset
    from tuneflow.config import DataSettings

    return prepare_dataset(tiny_archive, tmp_path_factory.mktemp("prepared") / "dataset", DataSettings(), seed=0)


@pytest.fixture(scope="session")
def resnet50_weights_file(tmp_path_factory) -> Path:
    """A ResNet50-without-top weights file, as a team would keep on disk (random values: no download here)."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "resnet50_notop.weights.h5"
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained 32-px classifier for TINY_CLASSES, saved once: enough to exercise predict and promotion."""
    from tuneflow.model import build_classifier, save_classifier

    model, _ = build_classifier(len(TINY_CLASSES), 32, None, 0.0, seed=1)
    return save_classifier(model, list(TINY_CLASSES), tmp_path_factory.mktemp("tiny-model")).parent

