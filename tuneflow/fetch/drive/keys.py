"""The service-account key: where it comes from (an option, a Secret's JSON, the environment) and its checks.

A `ServiceAccountKey` is checked once, when loaded, so a bad key fails before any request with a message saying
how to give a good one. Its contents never reach a log line, an exception or a repr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tuneflow.fetch.drive.errors import DriveCredentialsError

KEY_FILE_ENV_VARS = ("TUNEFLOW_DRIVE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS")
HOW_TO_GIVE_KEY = (
    "give a service-account JSON key as the drive.key_file setting (--key-file), through the "
    "TUNEFLOW_DRIVE_KEY_FILE or GOOGLE_APPLICATION_CREDENTIALS environment variable, or as the name of a Prefect "
    "Secret block holding the key's JSON (drive.key_secret_block, --key-secret-block)"
)
_REQUIRED_KEY_FIELDS = ("client_email", "private_key", "private_key_id", "client_id")


class ServiceAccountKey:
    """A checked service-account key. Its repr shows the account and where the key came from, never the key."""

    __slots__ = ("_info", "origin")

    def __init__(self, info: Mapping[str, Any], origin: str):
        self._info = _checked_key_info(info, origin)
        self.origin = origin

    @property
    def client_email(self) -> str:
        return str(self._info["client_email"])

    def as_dict(self) -> dict[str, Any]:
        """The key's JSON fields, for pydrive2 only."""
        return dict(self._info)

    def __repr__(self) -> str:
        return f"ServiceAccountKey(client_email={self.client_email!r}, origin={self.origin!r})"

    __str__ = __repr__

    def __reduce__(self):  # pickling would copy the private key into whatever stores the pickle
        raise TypeError("ServiceAccountKey is not picklable: pass the key file path or Secret block name instead")


def _checked_key_info(info: Any, origin: str) -> dict[str, Any]:
    if not isinstance(info, Mapping):
        raise DriveCredentialsError(f"{origin} does not hold a JSON object; {HOW_TO_GIVE_KEY}")
    kind = info.get("type")
    if kind != "service_account":
        raise DriveCredentialsError(
            f"{origin} holds a credential of type {kind!r}, not a service-account key ('service_account'); create "
            "one in the Google Cloud console under IAM → Service accounts → Keys → Add key → JSON"
        )
    missing = [name for name in _REQUIRED_KEY_FIELDS if not info.get(name)]
    if missing:
        raise DriveCredentialsError(
            f"{origin} lacks {', '.join(missing)}; download a fresh JSON key for the service account"
        )
    try:
        load_pem_private_key(str(info["private_key"]).encode(), password=None)
    except Exception:
        # `from None`: the parser's own message is not ours to vouch for, and the key text must not leak.
        raise DriveCredentialsError(
            f"private_key in {origin} is not a readable PEM private key; download a fresh JSON key for "
            f"{info['client_email']}"
        ) from None
    return dict(info)


def load_service_account_key(
    key_file: str | os.PathLike[str] | None = None,
    key_json: Mapping[str, Any] | str | None = None,
    *,
    key_json_origin: str = "the given key JSON",
    environ: Mapping[str, str] | None = None,
) -> ServiceAccountKey:
    """Find and check the service-account key: the key_file option, else `key_json` (e.g. a Prefect Secret
    block's value), else TUNEFLOW_DRIVE_KEY_FILE, else GOOGLE_APPLICATION_CREDENTIALS.

    Raises DriveCredentialsError saying how to provide a key when none is found or it is unusable.
    """
    if key_file is not None and key_json is not None:
        raise DriveCredentialsError(
            "both a key file and a key JSON (Secret block) were given; choose one (drive.key_file or "
            "drive.key_secret_block)"
        )
    if key_json is not None:
        if isinstance(key_json, str):
            try:
                key_json = json.loads(key_json)
            except json.JSONDecodeError as error:
                raise DriveCredentialsError(
                    f"{key_json_origin} is not valid JSON (line {error.lineno}, column {error.colno}); store the "
                    "whole service-account key file's contents in it"
                ) from None
        return ServiceAccountKey(key_json, key_json_origin)

    environ = os.environ if environ is None else environ
    if key_file is not None:
        path, where = Path(key_file), "the drive.key_file option"
    else:
        named = [(name, environ[name]) for name in KEY_FILE_ENV_VARS if environ.get(name, "").strip()]
        if not named:
            raise DriveCredentialsError(f"no Google Drive credentials: {HOW_TO_GIVE_KEY}")
        path, where = Path(named[0][1].strip()), f"the {named[0][0]} environment variable"

    path = path.expanduser()
    origin = f"key file {str(path)!r} (from {where})"
    if not path.is_file():
        raise DriveCredentialsError(f"{origin} does not exist or is not a file; {HOW_TO_GIVE_KEY}")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise DriveCredentialsError(
            f"{origin} cannot be read ({type(error).__name__}); check its permissions"
        ) from None
    except json.JSONDecodeError as error:
        raise DriveCredentialsError(
            f"{origin} is not JSON (line {error.lineno}, column {error.colno}); download the key again as JSON "
            "from the Google Cloud console"
        ) from None
    return ServiceAccountKey(info, origin)
