"""The Drive sensor: its decision rule as plain functions, and the flow against the Drive emulator.

The full path (deployments, workers) is in test_deployments.py; here each tick's outcome is checked directly,
including the ones that path never sees: a folder upload, a Drive outage, a file that vanished, a request for a
retraining that never reached the server.
"""

from __future__ import annotations

import re
import zipfile

import pytest
from pydantic import ValidationError

from tuneflow.flows.watch_drive import SeenRevision, WatchDriveConfig, decide, upload_event, upload_event_id
from tests.drive_fixtures import drive_emulator, key_file, test_key  # noqa: F401 (fixtures)
from tests.prefect_api import DroppingForwarder, drain_prefect_queues
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
        "retrain": False, "record": True, "reason": "baseline"
    }
    assert decide(None, drive_file(), trigger_on_first_run=True).retrain


def test_only_a_new_revision_or_a_new_file_retrains():
    assert not decide(seen(), drive_file(), False).retrain
    assert decide(seen(), drive_file(revision="0Brev2"), False).reason == "new-revision"
    # A new dataset.zip dropped into a watched folder has a new ID, whatever its revision id.
    assert decide(seen(), drive_file(file_id="1ZyXwVuTsRqPoNmLkJi", revision="0Brev1"), False).retrain


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


@pytest.fixture(scope="module")
def retrain_deployment(prefect_server) -> str:
    """A deployment of a flow called `retrain` that no worker runs: the sensor's requests stay Scheduled runs."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.create_deployment(flow_id=client.create_flow_from_name("retrain"), name="sensor-tests")
    return "retrain/sensor-tests"


def retrain_runs(deployment: str, revision: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [run for run in runs if run.parameters.get("drive_revision") == revision]


@pytest.mark.slow
def test_ticks_against_the_emulator(prefect_server, retrain_deployment, drive_emulator, key_file, tiny_archive):
    from prefect.variables import Variable

    from tuneflow.flows.watch_drive import watch_drive

    folder = drive_emulator.add_folder("datasets")
    first = drive_emulator.add_file("dataset.zip", tiny_archive, parents=[folder])
    drive = DriveSettings(key_file=key_file, api_endpoint=drive_emulator.api_endpoint, max_retries=1,
                          retry_base_delay_s=0.01, http_timeout_s=5)
    config = WatchDriveConfig(folder_id=folder, drive=drive, state_variable="test-watch-folder",
                              retrain_deployment=retrain_deployment)

    baseline = watch_drive(config)
    assert (baseline.status, baseline.file_id, baseline.event_id) == ("baseline", first, None)
    assert watch_drive(config).status == "unchanged"

    # Someone drops a fresh dataset.zip into the folder: a new file, so a retraining run on it, and an event.
    second = drive_emulator.add_file("dataset.zip", tiny_archive, parents=[folder])
    new = watch_drive(config)
    revision = drive_emulator.files[second].head.id
    assert (new.status, new.file_id, new.revision) == ("new-revision", second, revision)
    (run,) = retrain_runs(retrain_deployment, revision)
    assert str(run.id) == new.retrain_run_id and run.parameters["drive_file_id"] == second
    assert new.event_id == str(upload_event_id(second, revision))
    assert Variable.get("test-watch-folder")["file_id"] == second

    # Drive is down for a while: the tick says so and completes; the revision seen is kept for the next tick.
    drive_emulator.fail("list", status=503, times=2)  # both attempts of one tick (max_retries=1)
    assert watch_drive(config).status == "drive-unavailable"
    assert Variable.get("test-watch-folder")["revision"] == revision
    assert watch_drive(config).status == "unchanged"

    # The watched file is trashed: nothing to watch, said plainly, not a crash.
    single = WatchDriveConfig(file_id=second, drive=drive, state_variable="test-watch-file",
                              retrain_deployment=retrain_deployment)
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


def zip_with_comment(archive, comment: bytes) -> bytes:
    """The same photos in a new zip (new bytes, new MD5): what uploading the dataset again gives."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.comment = comment
    return buffer.getvalue()


@pytest.mark.slow
def test_a_request_that_never_reached_the_server_is_made_again_next_tick_and_only_once(
    prefect_server, retrain_deployment, drive_emulator, key_file, tiny_archive
):
    """The server is unreachable for exactly the request that tells it about the upload (the run request, or the
    event on a sensor that only emits one): the tick must fail and not record the revision, so that the next tick
    asks again; and asking again, as a sensor that lost its memory does, must not start a second run."""
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from prefect.variables import Variable

    from tuneflow.flows.watch_drive import watch_drive

    file_id = drive_emulator.add_file("dataset.zip", tiny_archive)
    first_revision = drive_emulator.files[file_id].head.id
    drive = DriveSettings(key_file=key_file, api_endpoint=drive_emulator.api_endpoint, http_timeout_s=5)
    config = WatchDriveConfig(file_id=file_id, drive=drive, state_variable="test-watch-unreachable",
                              retrain_deployment=retrain_deployment)
    forwarder = DroppingForwarder(PREFECT_API_URL.value())
    try:
        with temporary_settings(updates={PREFECT_API_URL: f"{forwarder.url}/api"}):
            assert watch_drive(config).status == "baseline"
            revision = drive_emulator.upload_revision(file_id, zip_with_comment(tiny_archive, b"second upload"))

            forwarder.dropping = re.compile(r"/create_flow_run$|/events/in$")
            # No client retries: the dropped request fails at once instead of after a minute of backing off.
            with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}), pytest.raises(Exception):
                watch_drive(config)  # the tick fails where its run page shows it
            forwarder.dropping = None
            assert forwarder.dropped
            assert Variable.get(config.variable_name)["revision"] == first_revision  # not recorded
            assert retrain_runs(retrain_deployment, revision) == []

            next_tick = watch_drive(config)
            assert (next_tick.status, next_tick.revision) == ("new-revision", revision)
            (run,) = retrain_runs(retrain_deployment, revision)
            assert next_tick.retrain_run_id == str(run.id)
            assert Variable.get(config.variable_name)["revision"] == revision

            # The sensor's memory is lost (its Variable deleted) and it asks for the same revision again.
            Variable.unset(config.variable_name)
            again = watch_drive(config.model_copy(update={"trigger_on_first_run": True}))
            assert again.retrain_run_id == str(run.id)
            assert len(retrain_runs(retrain_deployment, revision)) == 1
            drain_prefect_queues()  # while the forwarder they may report through is still there
    finally:
        forwarder.close()
