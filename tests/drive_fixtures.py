"""Fixtures for tests that talk to the Drive emulator: a running emulator, a service-account key it trusts,
and a pydrive2 client pointed at it. Import them into a test module (`from tests.drive_fixtures import *`) or
list this module in `pytest_plugins`."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.drive_emulator import DriveEmulator
from tuneflow.fetch.drive import RetryPolicy, connect_drive, load_service_account_key

SERVICE_ACCOUNT_EMAIL = "tuneflow-worker@tuneflow-tests.iam.gserviceaccount.com"
# Retries as in production but with 10 ms instead of 0.5 s as the first delay, so fault tests stay fast.
FAST_RETRY = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)


@dataclass(frozen=True)
class TestKey:
    """A generated RSA key pair standing in for a service account's key."""

    __test__ = False  # not a test class, whatever its name
    private_key: rsa.RSAPrivateKey
    private_pem: str

    @property
    def secret_lines(self) -> list[str]:
        """The PEM's base64 lines: any one of them in a log means the key leaked."""
        return [line for line in self.private_pem.splitlines() if line and not line.startswith("-----")]


def make_test_key() -> TestKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return TestKey(key, pem)


def service_account_info(key: TestKey, token_uri: str, email: str = SERVICE_ACCOUNT_EMAIL) -> dict[str, str]:
    """A service-account JSON key as the Google Cloud console writes it, with its token_uri pointed at us."""
    return {
        "type": "service_account",
        "project_id": "tuneflow-tests",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": key.private_pem,
        "client_email": email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def test_key() -> TestKey:
    return make_test_key()


@pytest.fixture
def drive_emulator(monkeypatch: pytest.MonkeyPatch, test_key: TestKey) -> Iterator[DriveEmulator]:
    # A proxy set on the machine must not intercept loopback requests.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with DriveEmulator() as emulator:
        emulator.register_service_account(SERVICE_ACCOUNT_EMAIL, test_key.private_key.public_key())
        yield emulator


@pytest.fixture
def key_file(tmp_path: Path, drive_emulator: DriveEmulator, test_key: TestKey) -> Path:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account_info(test_key, drive_emulator.token_uri)))
    return path


@pytest.fixture
def drive(drive_emulator: DriveEmulator, key_file: Path):
    """A real pydrive2 GoogleDrive, authenticated as the service account, talking to the emulator."""
    return connect_drive(load_service_account_key(key_file), api_endpoint=drive_emulator.api_endpoint, http_timeout_s=5)
