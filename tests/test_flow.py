"""The retrain flow end to end on tiny generated data, under a real (temporary) Prefect server.

Two runs into one data root, on the same photos and seed: the first from the local zip with random weights, the
second from (emulated) Google Drive, with the ResNet50 weights on Drive too. The real pydrive2 client authenticates
with a generated service-account key and downloads through `tests/drive_emulator.py`; the second run must record
which Drive file, revision and MD5 it trained on, and be compared with the first on the same validation images.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.drive_emulator import DriveEmulator
from tests.drive_fixtures import SERVICE_ACCOUNT_EMAIL, TestKey, service_account_info, test_key  # noqa: F401 (fixture)
from tuneflow.cli import main
from tuneflow.config import DataSettings, DriveSettings, RetrainConfig, TrainingSettings
from tuneflow.tasks.fetch import DATASET_PROGRESS_KEY

pytestmark = pytest.mark.slow

TINY_TRAINING = TrainingSettings(weights="none", image_size=32, batch_size=4, epochs=1)
RUN_FILES = [
    "config.json", "manifest.csv", "model.keras", "classes.json", "history.csv", "metrics.json", "predictions.csv",
    "report.md", "report.html",
]  # fmt: skip


def tiny_config(archive: Path, data_root: Path, **changes) -> RetrainConfig:
    return RetrainConfig(source=str(archive), data_root=data_root, training=TINY_TRAINING, **changes)


class AllRecords(logging.Handler):
    """Every record from the root and Prefect loggers (Prefect's do not propagate to the root)."""

    loggers = ("", "prefect")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class OnDrive:
    """The emulator the second run fetched from, what it holds, and every log record since it started."""

    emulator: DriveEmulator
    file_id: str
    weights_id: str
    config: RetrainConfig
    logs: AllRecords


@pytest.fixture(scope="module")
def on_drive(tiny_archive, resnet50_weights_file, test_key: TestKey, tmp_path_factory) -> Iterator[OnDrive]:
    """The tiny archive and random ResNet50 (no top) weights on the Drive emulator: stand-ins for the photos and
    the ImageNet weights a team puts on Drive; the config of a run that fetches both, with a pasted share link."""
    logs = AllRecords()
    with pytest.MonkeyPatch.context() as patch, DriveEmulator() as emulator:
        # A proxy set on the machine must not intercept loopback requests.
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        emulator.register_service_account(SERVICE_ACCOUNT_EMAIL, test_key.private_key.public_key())
        key_file = tmp_path_factory.mktemp("drive-key") / "service-account.json"
        key_file.write_text(json.dumps(service_account_info(test_key, emulator.token_uri)))
        file_id = emulator.add_file("dataset.zip", tiny_archive)
        weights_id = emulator.add_file("resnet50-notop.weights.h5", resnet50_weights_file)
        config = RetrainConfig(
            source=f"https://drive.google.com/file/d/{file_id}/view?usp=sharing",  # pasted as users copy it
            data_root=tmp_path_factory.mktemp("data"),
            training=TrainingSettings(weights=f"drive://{weights_id}", image_size=32, batch_size=4, epochs=1,
                                      fine_tune_epochs=0),
            drive=DriveSettings(key_file=key_file, api_endpoint=emulator.api_endpoint, http_timeout_s=10,
                                retry_base_delay_s=0.01),
        )
        for name in AllRecords.loggers:
            logging.getLogger(name).addHandler(logs)
        try:
            yield OnDrive(emulator=emulator, file_id=file_id, weights_id=weights_id, config=config, logs=logs)
        finally:
            for name in AllRecords.loggers:
                logging.getLogger(name).removeHandler(logs)


@pytest.fixture(scope="module")
def two_runs(prefect_server, tiny_archive, on_drive):
    """The same photos and seed run twice into one data root: from the local zip, then from Drive."""
    from tuneflow.flows.retrain import retrain

    return retrain(tiny_config(tiny_archive, on_drive.config.data_root)), retrain(on_drive.config)


def split_listing(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir / "dataset")) for p in (run_dir / "dataset").rglob("*.jpg"))


def test_run_folder_holds_every_output(two_runs):
    summary = two_runs[0]
    for name in RUN_FILES:
        assert (summary.run_dir / name).is_file(), f"{name} missing from {summary.run_dir}"
    assert summary.run_dir.parent.name == "runs"
    assert json.loads((summary.run_dir / "classes.json").read_text()) == ["apple_pie", "pizza", "sashimi"]
    report = (summary.run_dir / "report.md").read_text()
    assert f"{summary.accuracy:.2%}" in report
    assert summary.report_path == summary.run_dir / "report.md"
    assert summary.html_report_path == summary.run_dir / "report.html"
    assert f"{summary.accuracy * 100:.1f}%" in summary.html_report_path.read_text()


def test_report_and_artifacts_summarise_the_data(two_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    report = (two_runs[0].run_dir / "report.md").read_text()
    data = report.split("## Data", 1)[1]
    assert "30 images from 33 files in the archive, split by seed; every file is listed" in data
    assert "| apple_pie   |       8 |     2 |      10 |" in data
    assert "| all classes |      24 |     6 |      30 |" in data
    assert "| ignored  | not-an-image-file |       3 |" in data  # Food-101's meta/*.txt
    assert "- layout: Food-101 (images/<class>/ + meta/) under food-101/" in data
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dataset-counts", "dataset-manifest"]))
        )
    tables = {artifact.key: json.loads(artifact.data) for artifact in artifacts}
    assert {"class": "all classes", "train": 24, "val": 6, "total": 30} in tables["dataset-counts"]
    manifest = pd.read_csv(two_runs[0].run_dir / "manifest.csv", keep_default_na=False, dtype=str)
    assert len(tables["dataset-manifest"]) == len(manifest) == 33


def test_accuracy_is_the_share_of_correct_predictions(two_runs):
    run_dir = two_runs[0].run_dir
    predictions = pd.read_csv(run_dir / "predictions.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(predictions) == metrics["num_images"] == 6  # 2 of 10 per class held out, 3 classes
    assert metrics["accuracy"] == pytest.approx((predictions["true_class"] == predictions["predicted_class"]).mean())
    assert metrics["accuracy"] == pytest.approx(predictions["correct"].mean())
    probabilities = predictions[["p_apple_pie", "p_pizza", "p_sashimi"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (predictions["predicted_class"] == np.array(["apple_pie", "pizza", "sashimi"])[probabilities.argmax(1)]).all()
    assert metrics["data"]["md5"] and metrics["data"]["source"].endswith("dataset.zip")


def test_predict_matches_the_evaluation_row(two_runs, capsys):
    run_dir = two_runs[0].run_dir
    row = pd.read_csv(run_dir / "predictions.csv").iloc[0]
    assert main(["predict", str(run_dir), str(run_dir / "dataset" / row["path"])]) == 0
    printed = eval(capsys.readouterr().out.strip())  # the notebook's format: a list of (class, probability)
    assert [p for _, p in printed] == sorted((p for _, p in printed), reverse=True)
    for class_name, probability in printed:
        assert probability == pytest.approx(row[f"p_{class_name}"], rel=1e-3, abs=1e-6)


def test_first_run_is_promoted_second_is_compared_with_it_on_the_same_images(two_runs):
    from tuneflow.promotion import current_version, list_versions

    first, second = two_runs
    data_root = first.run_dir.parent.parent
    assert first.promoted and "no model was in use yet" in first.promotion_reason
    assert list_versions(data_root) == [first.model_version, second.model_version] == [first.run_dir.name,
                                                                                          second.run_dir.name]
    # Same seed, same split: re-scoring the first model on the second run's validation images gives its own score.
    in_use = pd.read_csv(second.run_dir / "current_model_predictions.csv")
    assert in_use["correct"].mean() == pytest.approx(first.accuracy)
    assert f"{first.accuracy:.2%} for the model in use ({first.model_version})" in second.promotion_reason
    assert second.promoted == (second.accuracy >= first.accuracy)
    assert current_version(data_root) == second.current_version
    assert second.promotion_reason in (second.run_dir / "report.md").read_text()


def test_split_is_stratified_and_the_same_for_the_same_photos_and_seed(two_runs, tiny_archive):
    first, second = (summary.run_dir for summary in two_runs)
    assert split_listing(first) == split_listing(second)
    for class_name in ["apple_pie", "pizza", "sashimi"]:
        assert len(list((first / "dataset" / "train" / class_name).iterdir())) == 8
        assert len(list((first / "dataset" / "val" / class_name).iterdir())) == 2
    with zipfile.ZipFile(tiny_archive) as archive:
        in_zip = {Path(name).name for name in archive.namelist() if name.endswith(".jpg")}
    assert {Path(p).name for p in split_listing(first)} == in_zip


def test_second_run_gets_its_own_folder(two_runs):
    first, second = (summary.run_dir for summary in two_runs)
    assert first != second and first.parent == second.parent
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name])


def test_second_run_records_the_drive_file_revision_and_md5_it_trained_on(two_runs, on_drive, tiny_archive):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    second, drive, file_id = two_runs[1], on_drive.emulator, on_drive.file_id
    head = drive.files[file_id].head
    metrics = json.loads((second.run_dir / "metrics.json").read_text())
    assert metrics["data"]["drive_file_id"] == file_id
    assert metrics["data"]["drive_revision"] == head.id
    assert metrics["data"]["md5"] == head.md5
    assert metrics["data"]["source"] == f"drive://{file_id}"
    report = (second.run_dir / "report.md").read_text()
    assert f"| Drive file ID | {file_id} |" in report
    assert f"| Drive revision | {head.id} |" in report
    assert f"| archive MD5 | {head.md5} |" in report
    cached = on_drive.config.data_root / "cache" / "drive" / file_id / head.md5 / "dataset.zip"
    assert cached.read_bytes() == tiny_archive.read_bytes()
    assert second.weights == f"drive://{on_drive.weights_id}"

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[DATASET_PROGRESS_KEY])))
    assert artifacts and artifacts[0].type == "progress" and float(artifacts[0].data) == 100.0


def test_the_next_runs_fetch_finds_both_drive_files_in_the_cache(two_runs, on_drive):
    """The next run's fetch steps, in a flow of their own (no training again), download nothing."""
    from prefect import flow

    from tuneflow.tasks.fetch import fetch_dataset, fetch_weights

    @flow
    def fetch_again(config: RetrainConfig):
        return fetch_dataset(config.source, config.drive, config.data_root), fetch_weights(
            config.training.weights, config.drive, config.data_root
        )

    head = on_drive.emulator.files[on_drive.file_id].head
    media_requests = on_drive.emulator.count("media")
    again, weights_path = fetch_again(on_drive.config)
    assert on_drive.emulator.count("media") == media_requests
    cached = on_drive.config.data_root / "cache" / "drive" / on_drive.file_id / head.md5 / "dataset.zip"
    assert (again.path, again.drive_revision) == (cached.resolve(), head.id)
    assert weights_path.parent.parent.name == on_drive.weights_id


def test_the_private_key_reaches_no_log_and_no_run_file(two_runs, on_drive, test_key: TestKey):
    runs = on_drive.config.data_root / "runs"
    written = "\n".join(path.read_text(errors="replace") for path in runs.rglob("*.json"))
    written += "\n".join(path.read_text() for path in runs.rglob("*.md"))
    assert on_drive.logs.lines and written
    for text in ("\n".join(on_drive.logs.lines), written):
        assert not any(line in text for line in test_key.secret_lines), "the private key leaked into a log or a run file"


def test_missing_source_fails_with_its_path(prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain

    with pytest.raises(FileNotFoundError, match="does not exist.*tuneflow sample"):
        retrain(tiny_config(tmp_path / "nope.zip", tmp_path / "data"))


def test_file_that_is_not_a_zip_is_refused(prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain

    not_zip = tmp_path / "dataset.zip"
    not_zip.write_text("this is a text file")
    with pytest.raises(ValueError, match="is not a zip archive"):
        retrain(tiny_config(not_zip, tmp_path / "data"))


def test_unknown_class_lists_the_available_ones(prefect_server, tiny_archive, tmp_path):
    from tuneflow.flows.retrain import retrain

    config = tiny_config(tiny_archive, tmp_path / "data", data=DataSettings(classes=["apple_pie", "piza"]))
    with pytest.raises(ValueError, match=r"class 'piza' is not in the archive; it has \['apple_pie', 'pizza', 'sashimi'\]\. Did you mean 'pizza'\?"):
        retrain(config)


def test_archive_with_one_class_is_refused(prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain
    from tuneflow.sample import write_sample_dataset

    one_class = write_sample_dataset(tmp_path / "one.zip", images_per_class=4, image_size=32, classes=("pizza",))
    with pytest.raises(ValueError, match="only the class \\['pizza'\\]; a classifier needs at least 2"):
        retrain(tiny_config(one_class, tmp_path / "data"))


def test_dashboard_gets_the_report_and_a_finished_training_progress(two_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        progress = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["training-progress"])))
        reports = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-report"])))
    # Each run adds a version under the same keys (other flows on this server too), in no particular order.
    for run in two_runs:
        (bar,) = [artifact for artifact in progress if artifact.description == f"training {run.run_dir.name}"]
        assert bar.type == "progress" and float(bar.data) == 100.0
        (report,) = [artifact for artifact in reports if artifact.data.startswith(f"# Retraining run {run.run_dir.name}\n")]
        assert f"{run.accuracy:.2%}" in report.data and run.promotion_reason in report.data


def test_training_logs_reach_the_run_folder_and_history_has_every_epoch(two_runs):
    run_dir = two_runs[0].run_dir
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1] and history["phase"].tolist() == ["full"]
    assert (run_dir / "train.log").is_file()
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["epochs_done"] == 1
