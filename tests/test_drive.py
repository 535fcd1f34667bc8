"""Google Drive downloads: the real pydrive2 client against the Drive emulator on 127.0.0.1.

No mocks of pydrive2 or googleapiclient: every request below is HTTP to `tests/drive_emulator.py`, which counts
them, so "downloaded nothing" and "did not retry" are checked where a user would see them, on the wire.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import random
import webbrowser
from pathlib import Path

import pytest

from tests.drive_emulator import DriveEmulator
from tests.drive_fixtures import (  # noqa: F401 (fixtures)
    FAST_RETRY,
    SERVICE_ACCOUNT_EMAIL,
    TestKey,
    drive,
    drive_emulator,
    key_file,
    make_test_key,
    service_account_info,
    test_key,
)
from tuneflow.fetch.drive import (
    DownloadProgress,
    DriveAccessError,
    DriveCredentialsError,
    DriveIntegrityError,
    DriveNotDownloadableError,
    DriveTransientError,
    RetryPolicy,
    ServiceAccountKey,
    cache_path_for,
    connect_drive,
    download_file,
    fetch_file_metadata,
    fetch_to_cache,
    find_newest_file,
    load_service_account_key,
)
from tuneflow.sources import parse_drive_source

CHUNK = 64 * 1024
FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def payload(size: int, seed: int = 0) -> bytes:
    """Reproducible random bytes: a corrupted or misplaced chunk changes the MD5."""
    return random.Random(seed).randbytes(size)


SIZE = 5 * CHUNK + 1234  # six Range requests
CONTENT = payload(SIZE)


class _AllRecords(logging.Handler):
    """Every log record, formatted with its traceback, from fixture setup to teardown."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_key_text_in_output(capsys: pytest.CaptureFixture[str], test_key: TestKey):
    """Every test here runs with all loggers at DEBUG; none may print or log any line of the private key."""
    # A handler of our own rather than caplog, whose text covers one phase only: the key is loaded and
    # pydrive2 authenticated while fixtures are set up.
    records, root = _AllRecords(), logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
    captured = capsys.readouterr()
    text = "\n".join(records.lines) + captured.out + captured.err
    leaked = [line for line in test_key.secret_lines if line in text]
    assert not leaked, f"{len(leaked)} line(s) of the private key appeared in logs or output"


def assert_no_key_text(message: str, key: TestKey) -> None:
    assert not any(line in message for line in key.secret_lines), "the error message contains the private key"


def media_ranges(emulator: DriveEmulator, file_id: str) -> list[str | None]:
    return [record.range for record in emulator.requests if record.route == "media" and record.file_id == file_id]


def range_after_first_fault(emulator: DriveEmulator, file_id: str) -> tuple[str | None, str | None]:
    """(range of the first request a fault hit, range of the request right after it)."""
    media = [record for record in emulator.requests if record.route == "media" and record.file_id == file_id]
    hit = next(index for index, record in enumerate(media) if record.fault)
    return media[hit].range, media[hit + 1].range


# --------------------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        f"drive://{FILE_ID}",
        f"  drive://{FILE_ID}/ ",
        f"https://drive.google.com/open?id={FILE_ID}",
        f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing",
        f"https://drive.google.com/file/d/{FILE_ID}/view",
        f"https://drive.google.com/file/d/{FILE_ID}/edit?usp=drive_link",
        f"https://drive.google.com/file/u/1/d/{FILE_ID}/view",
        f"https://drive.google.com/uc?id={FILE_ID}&export=download",
        f"https://drive.google.com/uc?export=download&id={FILE_ID}",
        f"https://drive.usercontent.google.com/download?id={FILE_ID}&export=download",
        f"http://drive.google.com/open?id={FILE_ID}",
    ],
)
def test_parse_drive_source_reads_the_id_from_forms_users_copy(source: str):
    assert parse_drive_source(source) == FILE_ID


@pytest.mark.parametrize("source", ["data/dataset.zip", "/srv/photos/dataset.zip", "~/dataset.zip", "dataset.zip", r"C:\data\dataset.zip"])
def test_parse_drive_source_leaves_local_paths_alone(source: str):
    assert parse_drive_source(source) is None


@pytest.mark.parametrize(
    "source",
    [
        "https://example.com/dataset.zip",
        "s3://bucket/dataset.zip",
        "drive://",
        f"drive:{FILE_ID}",
        "drive://not an id!",
        "drive://short",
        f"https://drive.google.com/drive/folders/{FILE_ID}",
        f"https://docs.google.com/document/d/{FILE_ID}/edit",
        "https://drive.google.com/open?id=",
        "https://drive.google.com/file/d//view",
    ],
)
def test_parse_drive_source_rejects_other_forms_listing_the_accepted_ones(source: str):
    with pytest.raises(ValueError) as error:
        parse_drive_source(source)
    message = str(error.value)
    assert repr(source) in message
    assert "drive://FILE_ID" in message and "/file/d/FILE_ID/view?usp=sharing" in message


# --------------------------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEFLOW_DRIVE_KEY_FILE", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *args, **kwargs: opened.append(url) or True)
    return opened


@pytest.mark.timeout(20)
def test_missing_credentials_fail_at_once_saying_how_to_provide_them(no_key_env, no_browser, drive_emulator):
    with pytest.raises(DriveCredentialsError) as error:
        load_service_account_key()
    message = str(error.value)
    for way in ("drive.key_file", "TUNEFLOW_DRIVE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "Secret block"):
        assert way in message
    assert no_browser == [] and drive_emulator.count() == 0


def test_key_file_comes_from_environment_variables_in_order(no_key_env, monkeypatch, key_file: Path, tmp_path: Path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    assert load_service_account_key().client_email == SERVICE_ACCOUNT_EMAIL

    monkeypatch.setenv("TUNEFLOW_DRIVE_KEY_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(DriveCredentialsError) as error:
        load_service_account_key()
    assert "missing.json" in str(error.value) and "TUNEFLOW_DRIVE_KEY_FILE" in str(error.value)


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (lambda info: "{ not json", "is not JSON"),
        (lambda info: {**info, "type": "authorized_user"}, "not a service-account key"),
        (lambda info: {k: v for k, v in info.items() if k != "private_key"}, "lacks private_key"),
        (lambda info: {**info, "private_key": info["private_key"][:300] + "garbled" + info["private_key"][400:]}, "not a readable PEM"),
    ],
    ids=["not-json", "user-credential", "no-private-key", "garbled-private-key"],
)
def test_unusable_key_file_is_refused_without_echoing_it(tmp_path, drive_emulator, test_key, broken, expected):
    info = broken(service_account_info(test_key, drive_emulator.token_uri))
    path = tmp_path / "key.json"
    path.write_text(info if isinstance(info, str) else json.dumps(info))
    with pytest.raises(DriveCredentialsError) as error:
        load_service_account_key(path)
    assert expected in str(error.value) and str(path) in str(error.value)
    assert_no_key_text(str(error.value), test_key)
    assert drive_emulator.count() == 0


def test_key_from_a_secret_value_works_and_never_shows_its_contents(drive_emulator, test_key):
    info = service_account_info(test_key, drive_emulator.token_uri)
    key = load_service_account_key(key_json=json.dumps(info), key_json_origin="Prefect Secret block 'drive-key'")
    assert SERVICE_ACCOUNT_EMAIL in repr(key) and "drive-key" in repr(key)
    assert_no_key_text(repr(key) + str(key), test_key)
    with pytest.raises(TypeError):
        pickle.dumps(key)

    drive = connect_drive(key, api_endpoint=drive_emulator.api_endpoint, http_timeout_s=5)
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    assert fetch_file_metadata(drive, file_id).size == SIZE


def test_a_key_google_does_not_accept_fails_at_once_naming_the_account(tmp_path, drive_emulator, no_browser):
    stranger = make_test_key()  # not registered with the emulator: like a deleted key
    path = tmp_path / "old-key.json"
    path.write_text(json.dumps(service_account_info(stranger, drive_emulator.token_uri)))
    drive = connect_drive(load_service_account_key(path), api_endpoint=drive_emulator.api_endpoint, http_timeout_s=5)
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)

    with pytest.raises(DriveCredentialsError) as error:
        fetch_to_cache(drive, file_id, tmp_path / "cache", retry=FAST_RETRY)
    assert SERVICE_ACCOUNT_EMAIL in str(error.value) and "Invalid JWT Signature" in str(error.value)
    assert_no_key_text(str(error.value), stranger)
    assert drive_emulator.count("token") == 1 and drive_emulator.count("metadata") == 0
    assert no_browser == []


def test_pydrive2_falling_back_to_browser_login_raises_instead(drive, drive_emulator, no_browser):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    # What pydrive2's LoadAuth does when it believes the method is not "service" and the token is gone.
    drive.auth.auth_method = None
    drive.auth.credentials = None
    with pytest.raises(DriveCredentialsError, match="interactive"):
        fetch_file_metadata(drive, file_id, retry=FAST_RETRY)
    assert no_browser == []


def test_a_settings_yaml_in_the_working_directory_is_ignored(drive_emulator, key_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.yaml").write_text("client_config_backend: file\nclient_config_file: nowhere.json\n")
    drive = connect_drive(load_service_account_key(key_file), api_endpoint=drive_emulator.api_endpoint)
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    assert fetch_file_metadata(drive, file_id).md5 == drive_emulator.files[file_id].head.md5


def test_an_expired_token_is_renewed_from_the_key(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    fetch_file_metadata(drive, file_id)
    drive_emulator.revoke_tokens()  # the next request is answered 401, as Google does after an hour
    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)
    assert result.path.read_bytes() == CONTENT
    assert drive_emulator.count("token") == 2


# --------------------------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------------------------


def test_clean_download_is_verified_and_cached_by_content(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    seen: list[DownloadProgress] = []

    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, on_progress=seen.append)

    md5 = drive_emulator.files[file_id].head.md5
    assert result.downloaded
    assert result.path == tmp_path / "cache" / file_id / md5 / "dataset.zip"
    assert result.path.read_bytes() == CONTENT
    assert (result.file.md5, result.file.size, result.file.revision) == (md5, SIZE, drive_emulator.files[file_id].head.id)
    assert drive_emulator.count("metadata") == 1
    assert drive_emulator.count("media") == math.ceil(SIZE / CHUNK)
    assert [progress.bytes_done for progress in seen] == [min((n + 1) * CHUNK, SIZE) for n in range(len(seen))]
    assert seen[-1].fraction == 1.0
    assert sorted(path.name for path in result.path.parent.iterdir()) == ["dataset.zip"]  # no .part left behind


def test_progress_is_logged_with_bytes_and_speed(drive, drive_emulator, tmp_path, no_key_text_in_output):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)
    prefix = "tuneflow.fetch.drive INFO "
    lines = [line.removeprefix(prefix) for line in no_key_text_in_output.lines if line.startswith(prefix)]
    assert any("%" in line and "MiB/s" in line for line in lines)
    assert any(line.startswith("Downloaded dataset.zip") and "verified" in line for line in lines)


def test_unchanged_file_is_not_downloaded_again(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    first = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)
    media_after_first = drive_emulator.count("media")

    second = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)

    assert not second.downloaded and second.path == first.path
    assert drive_emulator.count("media") == media_after_first  # not one byte of content fetched again
    assert drive_emulator.count("metadata") == 2  # only the metadata request


def test_new_revision_under_the_same_id_is_downloaded(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    first = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)
    new_content = payload(3 * CHUNK, seed=1)
    new_revision = drive_emulator.upload_revision(file_id, new_content)

    second = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)

    assert second.downloaded and second.file.revision == new_revision and second.file.id == file_id
    assert second.path.read_bytes() == new_content and second.path != first.path
    assert first.path.read_bytes() == CONTENT  # the earlier revision's copy is untouched


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "internalError"), (503, "backendError"), (429, "rateLimitExceeded"), (403, "userRateLimitExceeded"), (403, "rateLimitExceeded")],
)
def test_transient_http_errors_are_retried_and_resume(drive, drive_emulator, tmp_path, status, reason):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    fetch_file_metadata(drive, file_id)
    drive_emulator.fail("media", status, reason, times=2)

    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)

    assert result.path.read_bytes() == CONTENT
    assert drive_emulator.count("media") == math.ceil(SIZE / CHUNK) + 2


def test_connection_dropped_mid_body_resumes_from_bytes_on_disk(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    seen: list[int] = []

    def drop_the_third_chunk(progress: DownloadProgress) -> None:
        seen.append(progress.bytes_done)
        if len(seen) == 2:
            drive_emulator.drop_connection(file_id=file_id, after_bytes=1000)

    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY, on_progress=drop_the_third_chunk)

    assert result.path.read_bytes() == CONTENT
    dropped, retried = range_after_first_fault(drive_emulator, file_id)
    assert dropped == f"bytes={2 * CHUNK}-{3 * CHUNK - 1}"
    # Resumed at the first byte that did not arrive: the 1,000 that did are kept, nothing is asked for twice.
    assert retried == f"bytes={2 * CHUNK + 1000}-{3 * CHUNK + 1000 - 1}"
    assert len(media_ranges(drive_emulator, file_id)) == 3 + math.ceil((SIZE - 2 * CHUNK - 1000) / CHUNK)


def test_a_stalled_server_times_out_and_is_retried(drive_emulator, key_file, tmp_path):
    drive = connect_drive(load_service_account_key(key_file), api_endpoint=drive_emulator.api_endpoint, http_timeout_s=0.5)
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.stall(3.0, after_bytes=100)  # silent for longer than the client's timeout

    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)

    assert result.path.read_bytes() == CONTENT
    assert drive_emulator.count("media") == math.ceil(SIZE / CHUNK) + 1


def test_transient_metadata_and_listing_errors_are_retried(drive, drive_emulator):
    folder = drive_emulator.add_folder("uploads")
    file_id = drive_emulator.add_file("dataset.zip", CONTENT, parents=[folder])
    drive_emulator.fail("metadata", 503, times=1)
    drive_emulator.fail("list", 429, "rateLimitExceeded", times=1)

    assert fetch_file_metadata(drive, file_id, retry=FAST_RETRY).id == file_id
    assert find_newest_file(drive, folder, retry=FAST_RETRY).id == file_id
    assert drive_emulator.count("metadata") == 2 and drive_emulator.count("list") == 2


def test_an_html_error_page_from_a_proxy_is_retried_like_drives_own(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.fail("metadata", 502, message="Bad Gateway", html=True)
    drive_emulator.fail("media", 502, message="Bad Gateway", html=True)
    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)
    assert result.path.read_bytes() == CONTENT
    assert drive_emulator.count("metadata") == 2


def test_retries_back_off_exponentially(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.fail("media", 503, times=3)
    slept: list[float] = []
    policy = RetryPolicy(max_retries=5, base_delay_s=0.5, max_delay_s=20)

    fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=policy, sleep=slept.append)

    assert slept == pytest.approx([0.5, 0.5 * 1.618, 0.5 * 1.618**2])
    assert RetryPolicy().delay_s(20) == 20.0


def test_persistent_transient_failure_gives_up_keeping_bytes_for_the_next_run(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    seen: list[int] = []

    def fail_after_three_chunks(progress: DownloadProgress) -> None:
        seen.append(progress.bytes_done)
        if len(seen) == 3:
            drive_emulator.fail("media", 503, times=100)

    with pytest.raises(DriveTransientError) as error:
        fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY, on_progress=fail_after_three_chunks)
    assert "4 attempts" in str(error.value) and "503" in str(error.value)
    target = cache_path_for(tmp_path / "cache", fetch_file_metadata(drive, file_id))
    assert not target.exists()

    failed_range, _ = range_after_first_fault(drive_emulator, file_id)
    drive_emulator.faults.clear()
    requests_before = len(media_ranges(drive_emulator, file_id))
    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)
    assert result.path.read_bytes() == CONTENT
    assert media_ranges(drive_emulator, file_id)[requests_before] == failed_range  # the next run resumed
    assert failed_range != f"bytes=0-{CHUNK - 1}"


def test_a_partial_download_of_an_old_revision_is_cleared_by_the_next_revision(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.drop_connection(times=1000)
    with pytest.raises(DriveTransientError):
        fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)
    drive_emulator.faults.clear()
    new_content = payload(2 * CHUNK, seed=5)
    drive_emulator.upload_revision(file_id, new_content)

    assert fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK).path.read_bytes() == new_content
    assert list((tmp_path / "cache").rglob("*.part")) == []


def test_corrupted_bytes_are_downloaded_again_once(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.corrupt(times=1)
    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)
    assert result.path.read_bytes() == CONTENT
    assert drive_emulator.count("media") == 2 * math.ceil(SIZE / CHUNK)


def test_bytes_that_never_match_the_md5_fail_and_leave_nothing(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.corrupt(times=1000)
    with pytest.raises(DriveIntegrityError) as error:
        fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY)
    md5 = drive_emulator.files[file_id].head.md5
    assert md5 in str(error.value) and "dataset.zip" in str(error.value)
    assert [path for path in (tmp_path / "cache").rglob("*") if path.is_file()] == []


@pytest.mark.parametrize("fault", ["drop", "corrupt"])
def test_a_failed_download_never_replaces_a_good_file(drive, drive_emulator, tmp_path, fault):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    target = tmp_path / "dataset.zip"
    download_file(drive, fetch_file_metadata(drive, file_id), target, chunk_bytes=CHUNK)
    drive_emulator.upload_revision(file_id, payload(4 * CHUNK, seed=2))
    if fault == "drop":
        drive_emulator.drop_connection(times=1000)
    else:
        drive_emulator.corrupt(times=1000)

    with pytest.raises((DriveTransientError, DriveIntegrityError)):
        download_file(drive, fetch_file_metadata(drive, file_id), target, chunk_bytes=CHUNK, retry=FAST_RETRY)

    assert target.read_bytes() == CONTENT


def test_a_file_replaced_during_the_download_ends_as_the_new_revision(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    new_content = payload(2 * CHUNK + 5, seed=3)

    def replace_after_first_chunk(progress: DownloadProgress) -> None:
        if progress.bytes_done == CHUNK and progress.bytes_total == SIZE:
            drive_emulator.upload_revision(file_id, new_content)

    result = fetch_to_cache(
        drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK, retry=FAST_RETRY, on_progress=replace_after_first_chunk
    )
    assert result.path.read_bytes() == new_content and result.file.size == len(new_content)
    assert list((tmp_path / "cache").rglob("*.part")) == []  # the old revision's partial bytes are gone


def test_a_server_that_ignores_ranges_still_gives_a_verified_file(drive_emulator, drive, tmp_path):
    drive_emulator.honor_ranges = False
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    result = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=CHUNK)
    assert result.path.read_bytes() == CONTENT and drive_emulator.count("media") == 1


# --------------------------------------------------------------------------------------------------------------
# What is refused, and why
# --------------------------------------------------------------------------------------------------------------


def test_unknown_file_fails_at_once_naming_the_service_account(drive, drive_emulator, tmp_path):
    with pytest.raises(DriveAccessError) as error:
        fetch_to_cache(drive, FILE_ID, tmp_path / "cache", retry=FAST_RETRY)
    message = str(error.value)
    assert FILE_ID in message and SERVICE_ACCOUNT_EMAIL in message and "Share" in message
    assert drive_emulator.count("metadata") == 1  # not retried


def test_file_not_shared_with_the_service_account_names_who_to_share_with(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT, readers={"someone@example.com"})
    with pytest.raises(DriveAccessError, match=f"add {SERVICE_ACCOUNT_EMAIL} as a Viewer"):
        fetch_to_cache(drive, file_id, tmp_path / "cache", retry=FAST_RETRY)

    drive_emulator.share(file_id, SERVICE_ACCOUNT_EMAIL)
    assert fetch_to_cache(drive, file_id, tmp_path / "cache").path.read_bytes() == CONTENT


def test_permission_denied_on_content_fails_at_once(drive, drive_emulator, tmp_path):
    file_id = drive_emulator.add_file("dataset.zip", CONTENT)
    drive_emulator.fail("media", 403, "cannotDownloadFile", "The user does not have permission to download", times=1000)
    with pytest.raises(DriveAccessError) as error:
        fetch_to_cache(drive, file_id, tmp_path / "cache", retry=FAST_RETRY)
    assert SERVICE_ACCOUNT_EMAIL in str(error.value) and "cannotDownloadFile" in str(error.value)
    assert drive_emulator.count("media") == 1


def test_folder_is_refused_before_any_download(drive, drive_emulator, tmp_path):
    folder = drive_emulator.add_folder("photos")
    with pytest.raises(DriveNotDownloadableError, match="is a folder"):
        fetch_to_cache(drive, folder, tmp_path / "cache")
    assert drive_emulator.count("media") == 0


def test_google_doc_is_refused_before_any_download(drive, drive_emulator, tmp_path):
    doc = drive_emulator.add_google_doc("dataset notes")
    with pytest.raises(DriveNotDownloadableError) as error:
        fetch_to_cache(drive, doc, tmp_path / "cache")
    assert "Google document" in str(error.value) and "upload the .zip itself" in str(error.value)
    assert drive_emulator.count("media") == 0


# --------------------------------------------------------------------------------------------------------------
# Folder watching
# --------------------------------------------------------------------------------------------------------------


def test_find_newest_file_picks_the_latest_untrashed_upload_in_the_folder(drive, drive_emulator):
    folder = drive_emulator.add_folder("uploads")
    elsewhere = drive_emulator.add_folder("archive")
    drive_emulator.add_file("dataset.zip", CONTENT, parents=[folder])
    newest = drive_emulator.add_file("dataset.zip", payload(100, seed=4), parents=[folder])
    drive_emulator.add_file("notes.zip", CONTENT, parents=[folder])
    drive_emulator.add_file("dataset.zip", CONTENT, parents=[elsewhere])
    trashed = drive_emulator.add_file("dataset.zip", CONTENT, parents=[folder])
    drive_emulator.trash(trashed)
    drive_emulator.add_folder("dataset.zip", parents=[folder])

    found = find_newest_file(drive, folder)

    assert found is not None and found.id == newest and found.md5 == drive_emulator.files[newest].head.md5
    assert find_newest_file(drive, elsewhere, "missing.zip") is None


def test_find_newest_file_quotes_titles(drive, drive_emulator):
    folder = drive_emulator.add_folder("uploads")
    file_id = drive_emulator.add_file("it's mine.zip", CONTENT, parents=[folder])
    assert find_newest_file(drive, folder, "it's mine.zip").id == file_id


def test_the_leak_check_would_notice_a_logged_key(test_key):
    # The autouse check above is only worth something if it can fail: feed it a log that contains the key.
    text = f"DEBUG something {test_key.private_pem}"
    assert any(line in text for line in test_key.secret_lines)
    assert_no_key_text("nothing secret here", test_key)
    with pytest.raises(AssertionError):
        assert_no_key_text(text, test_key)


def test_a_full_disk_mid_download_leaves_a_part_file_its_md5_state_describes(tmp_path):
    """A write that fails (ENOSPC) after some bytes: the file is cut back to what was hashed, so a resumed
    download extends bytes whose MD5 it knows, and the error reaches the caller."""
    import errno
    import hashlib

    from tuneflow.fetch.drive.part_writer import BUFFER_BYTES, PartWriter

    class FillsUp(io.FileIO):
        def write(self, data):  # half of the third buffer fits, then the disk is full
            if self.tell() >= 2 * BUFFER_BYTES + BUFFER_BYTES // 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data[: BUFFER_BYTES // 2])

    part = tmp_path / "x.part"
    payload = os.urandom(4 * BUFFER_BYTES)
    out = FillsUp(part, "ab")
    writer = PartWriter(out, hashlib.md5())
    offset = 0

    def read_into(buffer):
        nonlocal offset
        taken = payload[offset : offset + len(buffer)]
        buffer[: len(taken)] = taken
        offset += len(taken)
        return len(taken)

    with pytest.raises(OSError, match="No space left"):
        for _ in range(4):
            writer.fill(read_into)
    writer.close()
    out.close()
    on_disk = part.read_bytes()
    assert len(on_disk) == writer.written == 2 * BUFFER_BYTES
    assert writer.digest.hexdigest() == hashlib.md5(on_disk).hexdigest() == hashlib.md5(payload[: len(on_disk)]).hexdigest()
