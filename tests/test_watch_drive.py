"""The Drive sensor: its decision rule as plain functions, and the flow against the Drive emulator.

The full path (deployments, trigger, workers) is in test_deployments.py; here each tick's outcome is checked
directly, including the ones that path never sees: a folder upload, a Drive outage, a file that vanished.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tuneflow.flows.watch_drive import SeenRevision, WatchDriveConfig, decide, upload_event, upload_event_id
from tests.drive_fixtures import drive_emulator, key_file, test_key  # noqa: F401 (fixtures)
from tuneflow.config import DriveSettings
from tuneflow.fetch.drive import DriveFile

FILE_ID = "1AbCdEfGhIjKlMnOpQrStUv"


def drive_file(file_id: str = FILE_ID, revision: str = "0Brev1") -> DriveFile:
    return DriveFile(id=file_id, title="dataset.zip", mime_type="application/zip", size=10, md5="ab" * 16,
                     revision=revision, modified="2025-01-01T00:00:00.000Z")


def seen(file_id: str = FILE_ID, revision: str = "0Brev1") -> SeenRevision:
    return SeenRevision.of(drive_file(file_id, revision))


def test_first_sight_is_a_baseline_unless_asked_to_trigger():
    assert decide(None, drive_file(), trigger_on_first_run=False).model_dump() == {
        "emit": False, "record": True, "reason": "baseline"
    }
    assert decide(None, drive_file(), trigger_on_first_run=True).emit


def test_only_a_new_revision_or_a_new_file_emits():
    assert not decide(seen(), drive_file(), False).emit
    assert decide(seen(), drive_file(revision="0Brev2"), False).reason == "new-revision"
    # A new dataset.zip dropped into a watched folder has a new ID, whatever its revision id.
    assert decide(seen(), drive_file(file_id="1ZyXwVuTsRqPoNmLkJi", revision="0Brev1"), False).emit


def test_the_event_id_is_the_same_for_the_same_revision_only():
    assert upload_event_id(FILE_ID, "0Brev1") == upload_event_id(FILE_ID, "0Brev1")
    assert upload_event_id(FILE_ID, "0Brev1") != upload_event_id(FILE_ID, "0Brev2")
    event = upload_event(drive_file())
    assert event["resource"]["gdrive.file-id"] == FILE_ID and event["resource"]["gdrive.revision"] == "0Brev1"
    assert event["id"] == upload_event_id(FILE_ID, "0Brev1")


def test_config_takes_links_and_needs_exactly_one_target():
    config = WatchDriveConfig(file_id=f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing")
    assert config.file_id == FILE_ID
    folder = WatchDriveConfig(folder_id=f"https://drive.google.com/drive/folders/{FILE_ID}")
    assert folder.folder_id == FILE_ID and folder.variable_name != config.variable_name
    with pytest.raises(ValidationError, match="neither"):
        WatchDriveConfig(file_id="")  # what an unset TUNEFLOW_DRIVE_FILE_ID deploys
    with pytest.raises(ValidationError, match="both"):
        WatchDriveConfig(file_id=FILE_ID, folder_id=FILE_ID)


@pytest.mark.slow
def test_ticks_against_the_emulator(prefect_server, drive_emulator, key_file, tiny_archive):
    from prefect.variables import Variable

    from tuneflow.flows.watch_drive import watch_drive

    folder = drive_emulator.add_folder("datasets")
    first = drive_emulator.add_file("dataset.zip", tiny_archive, parents=[folder])
    drive = DriveSettings(key_file=key_file, api_endpoint=drive_emulator.api_endpoint, max_retries=1,
                          retry_base_delay_s=0.01, http_timeout_s=5)
    config = WatchDriveConfig(folder_id=folder, drive=drive, state_variable="test-watch-folder")

    baseline = watch_drive(config)
    assert (baseline.status, baseline.file_id, baseline.event_id) == ("baseline", first, None)
    assert watch_drive(config).status == "unchanged"

    # Someone drops a fresh dataset.zip into the folder: a new file, so a new event naming it.
    second = drive_emulator.add_file("dataset.zip", tiny_archive, parents=[folder])
    new = watch_drive(config)
    revision = drive_emulator.files[second].head.id
    assert (new.status, new.file_id, new.revision) == ("new-revision", second, revision)
    assert new.event_id == str(upload_event_id(second, revision))
    assert Variable.get("test-watch-folder")["file_id"] == second

    # Drive is down for a while: the tick says so and completes; the revision seen is kept for the next tick.
    drive_emulator.fail("list", status=503, times=2)  # both attempts of one tick (max_retries=1)
    assert watch_drive(config).status == "drive-unavailable"
    assert Variable.get("test-watch-folder")["revision"] == revision
    assert watch_drive(config).status == "unchanged"

    # The watched file is trashed: nothing to watch, said plainly, not a crash.
    single = WatchDriveConfig(file_id=second, drive=drive, state_variable="test-watch-file")
    drive_emulator.trash(second)
    gone = watch_drive(single)
    assert gone.status == "nothing-there" and "trash" in gone.message


@pytest.mark.slow
def test_an_unshared_file_fails_the_tick_with_the_reason(prefect_server, drive_emulator, key_file, tiny_archive):
    from tuneflow.flows.watch_drive import watch_drive
    from tuneflow.fetch.drive import DriveAccessError

    hidden = drive_emulator.add_file("dataset.zip", tiny_archive, readers={"someone-else@example.com"})
    drive = DriveSettings(key_file=key_file, api_endpoint=drive_emulator.api_endpoint, http_timeout_s=5)
    with pytest.raises(DriveAccessError, match="share"):
        watch_drive(WatchDriveConfig(file_id=hidden, drive=drive))
