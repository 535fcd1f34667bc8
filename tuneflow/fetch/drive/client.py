"""Connecting: a pydrive2 client authenticated as the service account, unable to fall back to a browser login.

The settings are an explicit dict and the HTTP timeout is always set: a worker has no one to click through a
login and no one to notice a socket that stalls forever.
"""

from __future__ import annotations

from typing import Any

from googleapiclient.discovery import build
from pydrive2.auth import GoogleAuth
from pydrive2.drive import GoogleDrive

from tuneflow.fetch.drive.errors import DriveCredentialsError
from tuneflow.fetch.drive.keys import HOW_TO_GIVE_KEY, ServiceAccountKey
from tuneflow.sources import normalize_api_endpoint

# Downloads and folder listings only need to read; a leaked token then cannot change anyone's files.
DRIVE_READONLY_SCOPE = "https://www.googleapis.com/auth/drive.readonly"


def _refuse_interactive_login(*_args: Any, **_kwargs: Any) -> None:
    raise DriveCredentialsError(
        f"pydrive2 asked for an interactive (browser) login, which a worker cannot do; {HOW_TO_GIVE_KEY}"
    )


def connect_drive(
    key: ServiceAccountKey, *, http_timeout_s: float = 60.0, api_endpoint: str | None = None
) -> GoogleDrive:
    """A pydrive2 client authenticated as the service account; `api_endpoint` points it at an emulator.

    The access token is minted lazily, on the first request.
    """
    if http_timeout_s <= 0:
        raise ValueError(
            f"http_timeout_s {http_timeout_s} must be positive: without a timeout a stalled socket blocks forever"
        )
    endpoint = normalize_api_endpoint(api_endpoint)
    # An explicit settings dict, so a settings.yaml lying in the working directory cannot change how we log in.
    settings = {
        "client_config_backend": "service",
        "service_config": {"client_json_dict": key.as_dict()},
        "save_credentials": False,
        "oauth_scope": [DRIVE_READONLY_SCOPE],
    }
    gauth = GoogleAuth(settings=settings, http_timeout=http_timeout_s)
    # pydrive2's LoadAuth falls back to LocalWebserverAuth (open a browser, wait forever) whenever it believes the
    # auth method is not "service". That must never happen on a worker: fail loudly instead.
    gauth.LocalWebserverAuth = _refuse_interactive_login
    gauth.CommandLineAuth = _refuse_interactive_login
    try:
        gauth.ServiceAuth()
    except Exception as error:
        raise DriveCredentialsError(
            f"pydrive2 could not use the service-account key from {key.origin} ({type(error).__name__}); "
            f"{HOW_TO_GIVE_KEY}"
        ) from None
    if endpoint:
        # api_endpoint replaces rootUrl + servicePath of the bundled discovery document.
        gauth.service = build(
            "drive", "v2", http=gauth.http, cache_discovery=False, client_options={"api_endpoint": endpoint}
        )
    return GoogleDrive(gauth)


def service_account_email(drive: GoogleDrive) -> str:
    """The account's address, for messages that say whom to share a file with."""
    return getattr(drive.auth.credentials, "service_account_email", None) or "the service account"


def close_connections(drive: GoogleDrive) -> None:
    """Drop kept-alive connections after a network failure, so the retry does not reuse a half-read socket."""
    for http_obj in (getattr(drive.auth.thread_local, "http", None), drive.auth.http):
        connections = getattr(http_obj, "connections", None)
        if isinstance(connections, dict):
            for connection in list(connections.values()):
                connection.close()
            connections.clear()
