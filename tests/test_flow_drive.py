"""The retrain flow end to end with its dataset and weights on (emulated) Google Drive, under a Prefect server.

The real pydrive2 client authenticates with a generated service-account key and downloads through
`tests/drive_emulator.py`; the run must record which Drive file, revision and MD5 it trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tuneflow.tasks.fetch import DATASET_PROGRESS_KEY
from tests.drive_fixtures import (  # noqa: F401 (fixtures)
    TestKey,
    drive_emulator,
    key_file,
    test_key,
)
from tuneflow.config import DriveSettings, RetrainConfig, TrainingSettings

pytestmark = pytest.mark.slow


class _AllRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def drive_settings(emulator, key_path: Path) -> DriveSettings:
    return DriveSettings(key_file=key_path, api_endpoint=emulator.api_endpoint, http_timeout_s=10, retry_base_delay_s=0.01)


@pytest.fixture
def captured_logs():
    """Every record from the root and Prefect loggers (Prefect's do not propagate to the root)."""
    records = _AllRecords()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(records)
    yield records
    for logger in loggers:
        logger.removeHandler(records)


def test_retrain_from_drive_records_the_file_revision_and_md5_it_trained_on(
    prefect_server, tiny_archive, resnet50_weights_file, drive_emulator, key_file, test_key: TestKey, tmp_path,
    captured_logs,
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from prefect import flow

    from tuneflow.flows.retrain import retrain
    from tuneflow.tasks.fetch import fetch_dataset, fetch_weights

    file_id = drive_emulator.add_file("dataset.zip", tiny_archive)
    # Random ResNet50 (no top) weights in Keras' format: stand-ins for ImageNet weights a team puts on Drive.
    weights_id = drive_emulator.add_file("resnet50-notop.weights.h5", resnet50_weights_file)
    config = RetrainConfig(
        source=f"https://drive.google.com/file/d/{file_id}/view?usp=sharing",  # pasted as users copy it
        data_root=tmp_path / "data",
        training=TrainingSettings(weights=f"drive://{weights_id}", image_size=32, batch_size=4, epochs=1, fine_tune_epochs=0),
        drive=drive_settings(drive_emulator, key_file),
    )

    first = retrain(config)

    head = drive_emulator.files[file_id].head
    metrics = json.loads((first.run_dir / "metrics.json").read_text())
    assert metrics["data"]["drive_file_id"] == file_id
    assert metrics["data"]["drive_revision"] == head.id
    assert metrics["data"]["md5"] == head.md5
    assert metrics["data"]["source"] == f"drive://{file_id}"
    report = (first.run_dir / "report.md").read_text()
    assert f"| Drive file ID | {file_id} |" in report
    assert f"| Drive revision | {head.id} |" in report
    assert f"| archive MD5 | {head.md5} |" in report
    cached = tmp_path / "data" / "cache" / "drive" / file_id / head.md5 / "dataset.zip"
    assert cached.read_bytes() == tiny_archive.read_bytes()
    assert first.weights == f"drive://{weights_id}"

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[DATASET_PROGRESS_KEY])))
    assert artifacts and artifacts[0].type == "progress" and float(artifacts[0].data) == 100.0

    # The next run's fetch steps, in a flow of their own (no training again), find both files in the cache.
    @flow
    def fetch_again(config: RetrainConfig):
        return fetch_dataset(config.source, config.drive, config.data_root), fetch_weights(
            config.training.weights, config.drive, config.data_root
        )

    media_requests = drive_emulator.count("media")
    again, weights_path = fetch_again(config)
    assert drive_emulator.count("media") == media_requests
    assert (again.path, again.drive_revision) == (cached.resolve(), head.id)
    assert weights_path.parent.parent.name == weights_id

    written = "\n".join(path.read_text(errors="replace") for path in (tmp_path / "data" / "runs").rglob("*.json"))
    written += "\n".join(path.read_text() for path in (tmp_path / "data" / "runs").rglob("*.md"))
    for text in ("\n".join(captured_logs.lines), written):
        assert not any(line in text for line in test_key.secret_lines), "the private key leaked into a log or a run file"


def test_key_from_a_prefect_secret_block(prefect_server, drive_emulator, test_key: TestKey, tmp_path):
    from prefect.blocks.system import Secret

    from tuneflow.tasks.fetch import download_from_drive, load_drive_key
    from tests.drive_fixtures import SERVICE_ACCOUNT_EMAIL, service_account_info

    Secret(value=service_account_info(test_key, drive_emulator.token_uri)).save("drive-key-for-tests", overwrite=True)
    settings = DriveSettings(key_secret_block="drive-key-for-tests", api_endpoint=drive_emulator.api_endpoint)
    key = load_drive_key(settings)
    assert key.client_email == SERVICE_ACCOUNT_EMAIL and "drive-key-for-tests" in repr(key)

    file_id = drive_emulator.add_file("dataset.zip", b"PK" + b"\0" * 1000)
    assert download_from_drive(file_id, settings, tmp_path / "cache").path.read_bytes() == b"PK" + b"\0" * 1000


def test_a_missing_secret_block_says_how_to_create_it(prefect_server):
    from tuneflow.tasks.fetch import load_drive_key
    from tuneflow.drive import DriveCredentialsError

    with pytest.raises(DriveCredentialsError, match="'no-such-block' could not be loaded"):
        load_drive_key(DriveSettings(key_secret_block="no-such-block"))
