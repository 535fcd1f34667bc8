"""The fetch step's Drive wiring without a flow: config forms, weights from Drive, cache checks, retry policy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from prefect.states import Failed
from pydantic import ValidationError

from tuneflow.fetch.archives import fetch_drive_archive
from tuneflow.tasks.fetch import retry_only_transient_drive_errors
from tuneflow.fetch.weights import resolve_weights
from tests.drive_fixtures import (  # noqa: F401 (fixtures)
    drive_emulator,
    key_file,
    test_key,
    zip_bytes,
)
from tuneflow.cli import main
from tuneflow.config import DriveSettings, RetrainConfig, TrainingSettings
from tuneflow.fetch.drive import DriveAccessError, DriveCredentialsError, DriveTransientError

FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def drive_settings(emulator, key_path) -> DriveSettings:
    return DriveSettings(key_file=key_path, api_endpoint=emulator.api_endpoint, http_timeout_s=5, retry_base_delay_s=0.01)


# --------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        f"drive://{FILE_ID}",
        f"https://drive.google.com/open?id={FILE_ID}",
        f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing",
        f"https://drive.google.com/uc?id={FILE_ID}&export=download",
    ],
)
def test_drive_sources_are_stored_as_one_spelling(source):
    assert RetrainConfig(source=source).source == f"drive://{FILE_ID}"


def test_a_local_source_is_kept_as_given():
    assert RetrainConfig(source="data/sample/dataset.zip").source == "data/sample/dataset.zip"


@pytest.mark.parametrize("source", ["https://example.com/dataset.zip", "drive://", f"https://drive.google.com/drive/folders/{FILE_ID}"])
def test_other_sources_fail_validation_listing_the_accepted_forms(source):
    with pytest.raises(ValidationError) as error:
        RetrainConfig(source=source)
    assert "drive://FILE_ID" in str(error.value) and "https://drive.google.com/open?id=FILE_ID" in str(error.value)


def test_drive_weights_are_accepted_as_id_or_link():
    assert TrainingSettings(weights=f"drive://{FILE_ID}").weights == f"drive://{FILE_ID}"
    assert TrainingSettings(weights=f"https://drive.google.com/file/d/{FILE_ID}/view").weights == f"drive://{FILE_ID}"
    with pytest.raises(ValidationError, match="weights 'https://example.com/w.h5' is not a Drive file link"):
        TrainingSettings(weights="https://example.com/w.h5")


def test_drive_settings_reject_bad_values_naming_them(tmp_path):
    with pytest.raises(ValidationError, match="key_file '.*missing.json' is not a file"):
        DriveSettings(key_file=tmp_path / "missing.json")
    with pytest.raises(ValidationError, match="key_secret_block 'Drive Key' is not a Prefect block name"):
        DriveSettings(key_secret_block="Drive Key")
    with pytest.raises(ValidationError, match="api_endpoint 'http://127.0.0.1:9/' must be an http"):
        DriveSettings(api_endpoint="http://127.0.0.1:9")
    key = tmp_path / "key.json"
    key.write_text("{}")
    with pytest.raises(ValidationError, match="either key_file or key_secret_block, not both"):
        DriveSettings(key_file=key, key_secret_block="drive-key")
    with pytest.raises(ValidationError, match="http_timeout_s"):
        DriveSettings(http_timeout_s=0)
    assert DriveSettings(api_endpoint="http://127.0.0.1:9/drive/v2").api_endpoint == "http://127.0.0.1:9/drive/v2/"


def test_cli_takes_drive_options_into_the_config(tmp_path, monkeypatch):
    key = tmp_path / "key.json"
    key.write_text("{}")
    seen: list[RetrainConfig] = []

    def record_instead_of_running(config: RetrainConfig):
        seen.append(config)
        return SimpleNamespace(accuracy=1.0, html_report_path=tmp_path / "report.html", promoted=False, promotion_reason="test")

    monkeypatch.setattr("tuneflow.cli.commands.run_retrain", record_instead_of_running)
    args = ["retrain", "--source", f"drive://{FILE_ID}", "--key-file", str(key), "--http-timeout-s", "30", "--chunk-mib", "8"]
    assert main(args) == 0
    config = seen[0]
    assert (config.drive.key_file, config.drive.http_timeout_s, config.drive.chunk_mib) == (key.resolve(), 30, 8)


# --------------------------------------------------------------------------------------------------------------
# Fetching from Drive (plain functions, no flow)
# --------------------------------------------------------------------------------------------------------------


def test_drive_archive_records_file_revision_and_md5(drive_emulator, key_file, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", zip_bytes({"food-101/images/pizza/1.jpg": b"jpeg"}))
    archive = fetch_drive_archive(f"drive://{file_id}", file_id, drive_settings(drive_emulator, key_file), tmp_path / "cache")
    head = drive_emulator.files[file_id].head
    assert (archive.drive_file_id, archive.drive_revision, archive.md5, archive.size_bytes) == (file_id, head.id, head.md5, head.size)
    assert archive.path.is_relative_to(tmp_path / "cache")


def test_a_drive_file_that_is_not_a_zip_is_refused_by_name(drive_emulator, key_file, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", b"not a zip at all")
    with pytest.raises(ValueError, match=f"Drive file '{file_id}' \\('dataset.zip', application/zip\\) is not a zip archive"):
        fetch_drive_archive(f"drive://{file_id}", file_id, drive_settings(drive_emulator, key_file), tmp_path / "cache")


def test_drive_weights_are_verified_and_cached(drive_emulator, key_file, tmp_path):
    payload = b"weights" * 50_000
    weights_id = drive_emulator.add_file("resnet50-notop.weights.h5", payload)
    settings = drive_settings(drive_emulator, key_file)

    path = resolve_weights(f"drive://{weights_id}", settings, tmp_path / "cache")
    again = resolve_weights(f"drive://{weights_id}", settings, tmp_path / "cache")

    assert path == again and path.read_bytes() == payload and path.name == "resnet50-notop.weights.h5"
    assert drive_emulator.count("media", file_id=weights_id) == 1


def test_a_tampered_cached_copy_is_downloaded_again(drive_emulator, key_file, tmp_path):
    payload = b"weights" * 50_000
    weights_id = drive_emulator.add_file("resnet50-notop.weights.h5", payload)
    settings = drive_settings(drive_emulator, key_file)
    path = resolve_weights(f"drive://{weights_id}", settings, tmp_path / "cache")
    path.write_bytes(payload[:-7] + b"garbage")  # same size, different bytes

    assert resolve_weights(f"drive://{weights_id}", settings, tmp_path / "cache").read_bytes() == payload
    assert drive_emulator.count("media", file_id=weights_id) == 2


def test_missing_credentials_stop_the_fetch_before_any_request(drive_emulator, tmp_path, monkeypatch):
    monkeypatch.delenv("TUNEFLOW_DRIVE_KEY_FILE", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    settings = DriveSettings(api_endpoint=drive_emulator.api_endpoint)
    with pytest.raises(DriveCredentialsError, match="TUNEFLOW_DRIVE_KEY_FILE"):
        resolve_weights(f"drive://{FILE_ID}", settings, tmp_path / "cache")
    assert drive_emulator.count() == 0


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (DriveTransientError("503 five times"), True),
        (DriveAccessError("not shared"), False),
        (DriveCredentialsError("no key"), False),
        (FileNotFoundError("dataset.zip"), False),
    ],
)
def test_the_fetch_tasks_retry_only_transient_drive_failures(error, retried):
    assert retry_only_transient_drive_errors(None, None, Failed(data=error)) is retried


def test_secret_json_strings_are_accepted(drive_emulator, test_key):
    from tests.drive_fixtures import service_account_info
    from tuneflow.fetch.drive import load_service_account_key

    text = json.dumps(service_account_info(test_key, drive_emulator.token_uri))
    assert load_service_account_key(key_json=text).client_email.endswith("iam.gserviceaccount.com")
