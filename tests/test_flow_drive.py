"""The Drive key from a Prefect Secret block, under a Prefect server.

The retrain flow end to end with its dataset and weights on (emulated) Drive is the second run of test_flow.py.
"""

from __future__ import annotations

import pytest

from tests.drive_fixtures import TestKey, drive_emulator, test_key  # noqa: F401 (fixtures)
from tuneflow.config import DriveSettings

pytestmark = pytest.mark.slow


def test_key_from_a_prefect_secret_block(prefect_server, drive_emulator, test_key: TestKey, tmp_path):
    from prefect.blocks.system import Secret

    from tuneflow.drive import download_from_drive
    from tuneflow.tasks.fetch import load_drive_key
    from tests.drive_fixtures import SERVICE_ACCOUNT_EMAIL, service_account_info

    Secret(value=service_account_info(test_key, drive_emulator.token_uri)).save("drive-key-for-tests", overwrite=True)
    settings = DriveSettings(key_secret_block="drive-key-for-tests", api_endpoint=drive_emulator.api_endpoint)
    key = load_drive_key(settings)
    assert key.client_email == SERVICE_ACCOUNT_EMAIL and "drive-key-for-tests" in repr(key)

    file_id = drive_emulator.add_file("dataset.zip", b"PK" + b"\0" * 1000)
    assert download_from_drive(file_id, settings, tmp_path / "cache", load_key=load_drive_key).path.read_bytes() == b"PK" + b"\0" * 1000


def test_a_missing_secret_block_says_how_to_create_it(prefect_server):
    from tuneflow.tasks.fetch import load_drive_key
    from tuneflow.drive import DriveCredentialsError

    with pytest.raises(DriveCredentialsError, match="'no-such-block' could not be loaded"):
        load_drive_key(DriveSettings(key_secret_block="no-such-block"))
