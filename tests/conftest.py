"""Shared fixtures: an isolated Prefect test server and tiny generated datasets."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# Before Prefect or Keras is imported anywhere: keep their state out of the user's home and off the network.
_STATE = Path(tempfile.mkdtemp(prefix="tuneflow-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["KERAS_HOME"] = str(_STATE / "keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

import pytest  # noqa: E402

from tests import file_order  # noqa: E402
from tuneflow.dataset.sample import write_sample_dataset  # noqa: E402

TINY_CLASSES = ("apple_pie", "pizza", "sashimi")
# Fixtures that start a Prefect server or train ResNet50: a test using one (directly or through another fixture)
# must be marked slow, or `make test-fast` (-m "not slow") would start servers and train after all.
SLOW_FIXTURES = ("prefect_server", "local_stack", "dashboard_server", "two_phase_run")


def pytest_configure(config: pytest.Config) -> None:
    file_order.register(config)  # records test durations, to hand the longest files to the xdist workers first


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    file_order.sort_longest_files_first(config, items)
    unmarked = [
        f"{item.nodeid} (uses {', '.join(sorted(set(SLOW_FIXTURES) & set(item.fixturenames)))})"
        for item in items
        if set(SLOW_FIXTURES) & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("mark these tests @pytest.mark.slow:\n  " + "\n  ".join(unmarked))


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder `build(folder)` fills, built once per test run and shared by every xdist worker.

    Each worker has its own session, so a session fixture alone would build it once per worker. The folder lives
    next to the workers' own temp folders; a lock makes the first worker build it while the others wait, and the
    build happens in a staging folder renamed into place, so a crashed build leaves nothing half-written behind.
    """
    basetemp = tmp_path_factory.getbasetemp()
    shared = (basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp) / "built-once"
    shared.mkdir(exist_ok=True)
    folder = shared / name
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not folder.is_dir():
            staging = shared / f"{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            build(staging)
            staging.rename(folder)
    return folder


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


RESNET50_WEIGHTS_FILE = "resnet50_notop.weights.h5"


def save_resnet50_weights(folder: Path) -> None:
    import keras

    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(folder / RESNET50_WEIGHTS_FILE)


@pytest.fixture(scope="session")
def resnet50_weights_file(tmp_path_factory) -> Path:
    """A 32-px ResNet50-without-top weights file, as a team would keep on disk (random values: no download here).

    Built once per test run; tests read it and never write to it.
    """
    return built_once(tmp_path_factory, "resnet50-weights", save_resnet50_weights) / RESNET50_WEIGHTS_FILE


def save_tiny_model(folder: Path) -> None:
    from tuneflow.training.model import build_classifier, save_classifier

    model, _ = build_classifier(len(TINY_CLASSES), 32, None, 0.0, seed=1)
    save_classifier(model, list(TINY_CLASSES), folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained 32-px classifier for TINY_CLASSES: enough to exercise predict and promotion.

    Its folder (model.keras, classes.json) is built once per test run; tests read it and never write to it.
    """
    return built_once(tmp_path_factory, "tiny-model", save_tiny_model)

