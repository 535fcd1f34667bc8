"""Google Drive downloads for unattended workers: pydrive2 with a service account, resumable, verified, cached.

Plain typed functions with no Prefect imports; `tasks/fetch.py` wraps them. The pieces, in the order a run uses them:

- `parse_drive_source` (from `tuneflow.sources`): the file ID in `drive://ID` or a share link (None: local path).
- `load_service_account_key` + `connect_drive`: pydrive2 authenticated as a service account from an explicit
  settings dict, with an HTTP timeout, never able to reach pydrive2's browser login.
- `fetch_file_metadata` / `require_downloadable`: title, type, size, MD5, head revision; folders and Google Docs
  are refused before any byte is fetched.
- `download_file`: bounded Range requests into a `.part` file next to the target, resumed after a failure,
  checked against Drive's size and MD5, then renamed into place.
- `fetch_to_cache`: the above under `<cache>/drive/<file id>/<md5>/<title>`, so an unchanged file costs one
  metadata request.
- `find_newest_file`: the newest non-trashed file with a given name in a folder (a fresh upload gets a new ID).

Only transient failures are retried (429, 5xx, 403 rate limits, dropped or timed-out connections), with
exponential backoff; a missing file or a file not shared with the service account fails at once, naming the
account to share it with. The key's contents never reach a log line, an exception or a repr.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httplib2
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from oauth2client.client import AccessTokenRefreshError, HttpAccessTokenRefreshError
from pydrive2.auth import GoogleAuth, RefreshError
from pydrive2.drive import GoogleDrive
from pydrive2.files import ApiRequestError

from tuneflow.checksums import md5_state_of_file
from tuneflow.sources import FILE_ID_PATTERN, normalize_api_endpoint, parse_drive_source  # noqa: F401 (parse_drive_source: re-exported)

log = logging.getLogger(__name__)
Logger = logging.Logger | logging.LoggerAdapter
T = TypeVar("T")

# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


class DriveError(Exception):
    """A Drive download failed; the message says why and what to do."""


class DriveCredentialsError(DriveError):
    """No usable service-account key, or Google rejected it."""


class DriveAccessError(DriveError):
    """The file does not exist or the service account may not read it. Not retried."""


class DriveNotDownloadableError(DriveError):
    """The ID names a folder or a Google Docs file, not a binary file."""


class DriveIntegrityError(DriveError):
    """The bytes received do not match Drive's size or MD5."""


class DriveTransientError(DriveError):
    """A retryable failure (rate limit, server error, dropped connection) that outlasted every retry."""


# --------------------------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------------------------

KEY_FILE_ENV_VARS = ("TUNEFLOW_DRIVE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS")
HOW_TO_GIVE_KEY = (
    "give a service-account JSON key as the drive.key_file setting (--key-file), through the "
    "TUNEFLOW_DRIVE_KEY_FILE or GOOGLE_APPLICATION_CREDENTIALS environment variable, or as the name of a Prefect "
    "Secret block holding the key's JSON (drive.key_secret_block, --key-secret-block)"
)
_REQUIRED_KEY_FIELDS = ("client_email", "private_key", "private_key_id", "client_id")
# Downloads and folder listings only need to read; a leaked token then cannot change anyone's files.
DRIVE_READONLY_SCOPE = "https://www.googleapis.com/auth/drive.readonly"


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
    return getattr(drive.auth.credentials, "service_account_email", None) or "the service account"


# --------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------

FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
GOOGLE_APPS_MIME_PREFIX = "application/vnd.google-apps."
# v2 names: the trashed flag lives under labels; md5Checksum/headRevisionId/fileSize exist only for binary files.
METADATA_FIELDS = "id,title,mimeType,fileSize,md5Checksum,headRevisionId,modifiedDate,labels(trashed)"


@dataclass(frozen=True)
class DriveFile:
    """What Drive says about a file: enough to decide whether to download it and to check what arrived."""

    id: str
    title: str
    mime_type: str
    size: int | None
    md5: str | None
    revision: str | None
    modified: str
    trashed: bool = False

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DriveFile:
        size = metadata.get("fileSize")
        return cls(
            id=str(metadata["id"]),
            title=str(metadata.get("title") or metadata["id"]),
            mime_type=str(metadata.get("mimeType", "")),
            size=int(size) if size is not None else None,
            md5=metadata.get("md5Checksum"),
            revision=metadata.get("headRevisionId"),
            modified=str(metadata.get("modifiedDate", "")),
            trashed=bool((metadata.get("labels") or {}).get("trashed", False)),
        )

    @property
    def is_folder(self) -> bool:
        return self.mime_type == FOLDER_MIME_TYPE


def require_downloadable(file: DriveFile) -> None:
    """Refuse folders and Google Docs/Sheets/... files, which have no bytes to download as a .zip."""
    if file.is_folder:
        raise DriveNotDownloadableError(
            f"Drive ID {file.id!r} ({file.title!r}) is a folder, not a file; give the ID of the .zip inside it "
            "(open the file's menu → Share → Copy link)"
        )
    if file.mime_type.startswith(GOOGLE_APPS_MIME_PREFIX):
        kind = file.mime_type.removeprefix(GOOGLE_APPS_MIME_PREFIX)
        raise DriveNotDownloadableError(
            f"Drive file {file.id!r} ({file.title!r}) is a Google {kind} file ({file.mime_type}), which has no "
            "downloadable bytes; upload the .zip itself to Drive and use that file's ID"
        )
    if file.size is None or not file.md5:
        raise DriveNotDownloadableError(
            f"Drive file {file.id!r} ({file.title!r}, {file.mime_type}) has no size or MD5 in its metadata, so a "
            "download could not be verified; upload the .zip as a regular file"
        )


def fetch_file_metadata(
    drive: GoogleDrive,
    file_id: str,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> DriveFile:
    """Read the file's metadata (one request, retried when transient)."""

    def request() -> DriveFile:
        drive_file = drive.CreateFile({"id": file_id})
        drive_file.FetchMetadata(fields=METADATA_FIELDS)
        return DriveFile.from_metadata(drive_file.metadata)

    return _with_retries(f"reading metadata of Drive file {file_id!r}", request, drive, file_id, retry, sleep, logger)


def find_newest_file(
    drive: GoogleDrive,
    folder_id: str,
    title: str = "dataset.zip",
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> DriveFile | None:
    """The most recently modified non-trashed file called `title` in the folder, or None if there is none.

    A fresh upload of dataset.zip into a folder gets a new file ID, so a watcher looks it up by name.
    """
    if not FILE_ID_PATTERN.fullmatch(folder_id):
        raise ValueError(f"folder_id {folder_id!r} is not a Drive ID (10+ letters, digits, '-' or '_')")
    query = (
        f"title = {_query_string(title)} and {_query_string(folder_id)} in parents and trashed = false "
        f"and mimeType != {_query_string(FOLDER_MIME_TYPE)}"
    )

    def request() -> DriveFile | None:
        # maxResults=1 makes GetList a single request instead of walking every page.
        file_list = drive.ListFile(
            {
                "q": query,
                "orderBy": "modifiedDate desc",
                "maxResults": 1,
                "fields": f"items({METADATA_FIELDS}),nextPageToken",
            }
        )
        items = file_list.GetList()
        return DriveFile.from_metadata(items[0]) if items else None

    return _with_retries(
        f"listing {title!r} in Drive folder {folder_id!r}", request, drive, folder_id, retry, sleep, logger
    )


def _query_string(value: str) -> str:
    """A Drive query string literal: quotes and backslashes escaped with a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------------------------

RATE_LIMIT_REASONS = {"userRateLimitExceeded", "rateLimitExceeded"}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient Drive failures are retried (DVC's policy for Drive)."""

    max_retries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def delay_s(self, retry_number: int) -> float:
        """Seconds to wait before retry number `retry_number` (0 for the first retry)."""
        return min(self.base_delay_s * 1.618**retry_number, self.max_delay_s)


DEFAULT_RETRY = RetryPolicy()


def _http_status_and_reason(error: BaseException) -> tuple[int, str, str] | None:
    """(status, reason, message) of an HTTP error from googleapiclient or pydrive2, else None."""
    if isinstance(error, ApiRequestError):
        body = error.error or {}
        first = (body.get("errors") or [{}])[0]
        http_error = error.args[0] if error.args and isinstance(error.args[0], HttpError) else None
        status = int(body.get("code") or (http_error.resp.status if http_error else 0))
        return status, str(first.get("reason", "")), str(body.get("message", ""))
    if isinstance(error, HttpError):
        reason = message = ""
        try:
            body = json.loads(error.content.decode("utf-8")).get("error", {})
            reason = str((body.get("errors") or [{}])[0].get("reason", ""))
            message = str(body.get("message", ""))
        except (ValueError, AttributeError):
            pass
        return int(error.resp.status), reason, message
    if isinstance(error, json.JSONDecodeError):
        # pydrive2's ApiRequestError assumes a JSON body; a proxy's HTML error page makes it raise this instead,
        # raised while handling the HttpError, which is still there in the exception's context chain.
        context = error.__context__
        while context is not None and not isinstance(context, HttpError):
            context = context.__context__
        return _http_status_and_reason(context) if context is not None else None
    return None


def _is_transient_http(status: int, reason: str) -> bool:
    return status in (408, 429) or status >= 500 or (status == 403 and reason in RATE_LIMIT_REASONS)


_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # reset, refused, aborted, RemoteDisconnected
    TimeoutError,  # socket.timeout: no byte within http_timeout_s
    http.client.HTTPException,  # IncompleteRead: the connection dropped mid-body
    httplib2.ServerNotFoundError,  # a DNS blip on the worker
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


def _is_transient(error: BaseException) -> bool:
    """Whether a failed request may succeed if repeated: rate limits, server errors, network trouble."""
    if isinstance(error, RefreshError) and isinstance(error.__context__, AccessTokenRefreshError):
        error = error.__context__  # pydrive2 wraps token errors
    if isinstance(error, HttpAccessTokenRefreshError):
        return error.status is not None and _is_transient_http(error.status, "")
    if isinstance(error, _NETWORK_ERRORS):
        return True
    parsed = _http_status_and_reason(error)
    return parsed is not None and _is_transient_http(parsed[0], parsed[1])


def _explain_permanent(error: BaseException, drive: GoogleDrive, subject_id: str) -> DriveError | None:
    """A DriveError saying what to do about a permanent failure; None when `error` did not come from Drive."""
    email = service_account_email(drive)
    if isinstance(error, RefreshError) and isinstance(error.__context__, AccessTokenRefreshError):
        error = error.__context__
    if isinstance(error, AccessTokenRefreshError):
        return DriveCredentialsError(
            f"Google refused an access token for the service account {email} ({error}); the key may have been "
            f"deleted or the account disabled: create a new JSON key and {HOW_TO_GIVE_KEY}"
        )
    parsed = _http_status_and_reason(error)
    if parsed is None:
        return None
    status, reason, message = parsed
    detail = f"{status} {reason or 'error'}: {message}".rstrip(": ")
    if status == 404:
        return DriveAccessError(
            f"Drive file {subject_id!r} was not found, or it is not shared with the service account {email} "
            f"({detail}). Check the ID, then in Drive open the file's menu → Share → add {email} as a Viewer"
        )
    if status == 403:
        return DriveAccessError(
            f"Drive refused the service account {email} access to {subject_id!r} ({detail}). Share the file "
            f"(or its folder) with {email} as a Viewer; if it is shared, the owner may have disabled downloads "
            "for viewers"
        )
    if status == 401:
        return DriveCredentialsError(
            f"Drive rejected the access token of the service account {email} ({detail}); create a new JSON "
            f"key and {HOW_TO_GIVE_KEY}"
        )
    return DriveError(f"Drive answered {detail} for {subject_id!r}; this is not retried")


def _describe(error: BaseException) -> str:
    parsed = _http_status_and_reason(error)
    if parsed:
        status, reason, _ = parsed
        return f"HTTP {status}{' ' + reason if reason else ''}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _with_retries(
    what: str,
    call: Callable[[], T],
    drive: GoogleDrive,
    subject_id: str,
    retry: RetryPolicy | None,
    sleep: Callable[[float], None],
    logger: Logger,
    on_retry: Callable[[], None] | None = None,
) -> T:
    retry = retry or DEFAULT_RETRY
    for retry_number in range(retry.max_retries + 1):
        try:
            return call()
        except DriveError:
            raise
        except Exception as error:
            if not _is_transient(error):
                explained = _explain_permanent(error, drive, subject_id)
                if explained is None:
                    raise  # not a Drive failure (a bug, a full disk): as it is
                raise explained from error
            if retry_number == retry.max_retries:
                raise DriveTransientError(
                    f"{what} still failed after {retry.max_retries + 1} attempts (last: {_describe(error)}); Drive "
                    "or the network is having trouble, try again later"
                ) from error
            delay = retry.delay_s(retry_number)
            logger.warning(
                "%s failed (%s); retry %d of %d in %.1f s",
                what, _describe(error), retry_number + 1, retry.max_retries, delay,
            )
            _close_connections(drive)
            if on_retry:
                on_retry()
            sleep(delay)
    raise AssertionError("unreachable")


def _close_connections(drive: GoogleDrive) -> None:
    """Drop kept-alive connections after a network failure, so the retry does not reuse a half-read socket."""
    for http_obj in (getattr(drive.auth.thread_local, "http", None), drive.auth.http):
        connections = getattr(http_obj, "connections", None)
        if isinstance(connections, dict):
            for connection in list(connections.values()):
                connection.close()
            connections.clear()


# --------------------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------------------

# Each Range request is read whole into memory by httplib2, so this bounds the download's memory; 16 MiB keeps
# the per-request overhead negligible (64 requests for 1 GiB).
DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
WRITE_SLICE_BYTES = 1024 * 1024  # fits in L2/L3 cache
PROGRESS_LOG_EVERY_S = 15.0


@dataclass(frozen=True)
class DownloadProgress:
    """One step of a download, for progress bars and artifacts."""

    file_id: str
    title: str
    bytes_done: int
    bytes_total: int
    bytes_per_s: float  # over the bytes fetched in this call (resumed bytes excluded)

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


ProgressCallback = Callable[[DownloadProgress], None]


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


class _ProgressReporter:
    """Log lines at every 10% (and at least every 15 s) plus a callback per chunk."""

    def __init__(self, file: DriveFile, logger: Logger, callback: ProgressCallback | None, already: int):
        self.file, self.logger, self.callback = file, logger, callback
        self.started = time.monotonic()
        self.resumed_from = already
        self.last_log = self.started
        self.last_decile = (10 * already // file.size) if file.size else 10

    def speed(self, done: int) -> float:
        elapsed = time.monotonic() - self.started
        return (done - self.resumed_from) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        total = self.file.size or 0
        speed = self.speed(done)
        decile = 10 * done // total if total else 10
        now = time.monotonic()
        if decile > self.last_decile or now - self.last_log >= PROGRESS_LOG_EVERY_S:
            self.last_decile, self.last_log = decile, now
            self.logger.info(
                "%s: %s of %s (%d%%) at %s/s",
                self.file.title, _mib(done), _mib(total), 100 * done // max(total, 1), _mib(speed),
            )
        if self.callback:
            self.callback(DownloadProgress(self.file.id, self.file.title, done, total, speed))

    def restart(self) -> None:
        self.started, self.resumed_from = time.monotonic(), 0


def _parse_content_range(value: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value.strip())
    if not match:
        raise http.client.HTTPException(f"unreadable Content-Range {value!r}")
    first, last, total = (int(group) for group in match.groups())
    return first, last, total


def _thread_http(drive: GoogleDrive) -> httplib2.Http:
    """The authorized httplib2 client pydrive2 keeps per thread (httplib2 objects are not thread-safe).

    It adds the bearer token, mints it on first use and refreshes it on a 401, like every pydrive2 request.
    """
    if not getattr(drive.auth.thread_local, "http", None):
        drive.auth.thread_local.http = drive.auth.Get_Http_Object()
    return drive.auth.thread_local.http


def download_file(
    drive: GoogleDrive,
    file: DriveFile,
    target: Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    retry: RetryPolicy | None = None,
    on_progress: ProgressCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> Path:
    """Download `file` to `target`, verified against Drive's size and MD5; the target changes only on success.

    Bytes go to `.TARGET.MD5.part` next to the target (same filesystem, so the final rename is atomic). A
    transient failure resumes from the bytes already there, in this call or a later run; a checksum mismatch
    starts over once, then raises DriveIntegrityError.
    """
    # Why not pydrive2's GetContentFile: it opens the target with "w+b" (a failure leaves a truncated file where a
    # good one was), never retries and never resumes. GetContentIOBuffer and MediaIoBaseDownload always start at
    # byte 0. So we send the same Range requests MediaIoBaseDownload sends, to the media URI built by pydrive2's
    # service and through pydrive2's authorized http, starting wherever the .part file ends.
    require_downloadable(file)
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes {chunk_bytes} must be at least 1")
    assert file.size is not None and file.md5 is not None
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{file.md5}.part")

    for start_over in (False, True):
        if start_over:
            logger.warning(
                "%s: downloaded bytes did not match Drive's MD5 %s; downloading it once more from the start",
                file.title,
                file.md5,
            )
            part.unlink(missing_ok=True)
        digest = _resume_digest(part, file.size)
        done = part.stat().st_size if part.exists() else 0
        if done:
            logger.info("%s: resuming from %s already on disk at %s", file.title, _mib(done), part)
        else:
            logger.info(
                "Downloading %s (Drive file %s, revision %s, %s) to %s",
                file.title, file.id, file.revision, _mib(file.size), target,
            )
        reporter = _ProgressReporter(file, logger, on_progress, done)
        state = {"digest": digest}

        def fetch_rest() -> None:
            state["digest"] = _fetch_missing_bytes(drive, file, part, state["digest"], chunk_bytes, reporter)

        try:
            _with_retries(f"downloading {file.title!r} ({file.id})", fetch_rest, drive, file.id, retry, sleep, logger)
        except DriveIntegrityError:
            part.unlink(missing_ok=True)  # the file changed on Drive: these bytes can never be completed
            raise
        size, md5 = part.stat().st_size, state["digest"].hexdigest()
        if size == file.size and md5 == file.md5:
            os.replace(part, target)  # atomic: readers see the old file or the complete new one
            elapsed = time.monotonic() - reporter.started
            logger.info(
                "Downloaded %s (%s, MD5 %s verified) in %.1f s, %s/s",
                file.title, _mib(file.size), md5, elapsed, _mib(reporter.speed(file.size)),
            )
            return target
    part.unlink(missing_ok=True)
    raise DriveIntegrityError(
        f"downloaded {file.title!r} ({file.id}) twice and got {size} bytes with MD5 {md5}, but Drive lists {file.size} "
        f"bytes with MD5 {file.md5}; if the file was being replaced meanwhile run again, otherwise re-upload it. "
        f"Nothing was written to {str(target)!r}"
    )


def _resume_digest(part: Path, expected_size: int) -> Any:
    """MD5 state over the bytes already in `part`; a part longer than the file is discarded."""
    if part.exists() and part.stat().st_size > expected_size:
        part.unlink()
    return md5_state_of_file(part) if part.exists() else hashlib.md5()


class _PartWriter:
    """Appends chunks to the .part file and hashes them on a helper thread, one chunk behind the network.

    Writing and hashing cost about as much time as receiving; all three release the GIL, so doing them while
    the next chunk arrives nearly halves a large download. At most two chunks are in memory at once. Progress
    is reported from the calling thread, where the task layer's Prefect context lives.
    """

    def __init__(self, out: Any, digest: Any, reporter: _ProgressReporter):
        self.out, self.digest, self.reporter = out, digest, reporter
        self.written = out.tell()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drive-part-writer")
        self._pending: Future[None] | None = None

    def _write(self, content: bytes) -> None:
        # Slice by slice, so MD5 reads each slice from the CPU cache right after write() copied it: twice
        # the throughput of writing 16 MiB and then hashing 16 MiB from memory.
        view = memoryview(content)
        for start in range(0, len(view), WRITE_SLICE_BYTES):
            piece = view[start : start + WRITE_SLICE_BYTES]
            self.out.write(piece)
            self.digest.update(piece)
        self.written += len(content)

    def append(self, content: bytes) -> None:
        self.wait()
        self._pending = self._pool.submit(self._write, content)

    def wait(self) -> None:
        """Block until the chunk in flight is on disk and hashed (re-raising a write error here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
            self.reporter.update(self.written)

    def start_over(self) -> None:
        self.wait()
        self.out.seek(0)
        self.out.truncate()
        self.digest, self.written = hashlib.md5(), 0
        self.reporter.restart()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _fetch_missing_bytes(
    drive: GoogleDrive, file: DriveFile, part: Path, digest: Any, chunk_bytes: int, reporter: _ProgressReporter
) -> Any:
    """Append the bytes after the end of `part` to it, one Range request per chunk; returns the MD5 state."""
    total = file.size or 0
    request = drive.auth.service.files().get_media(fileId=file.id, acknowledgeAbuse=False)
    http_obj = _thread_http(drive)
    # "ab": what is already on disk is kept and extended; a failure mid-request writes nothing of that chunk,
    # because httplib2 returns a response body whole or raises.
    with part.open("ab") as out:
        writer = _PartWriter(out, digest, reporter)
        try:
            done = writer.written
            while done < total:
                last = min(done + chunk_bytes, total) - 1
                response, content = http_obj.request(
                    request.uri, method="GET", headers={"range": f"bytes={done}-{last}"}
                )
                if response.status == 206:
                    first, _, size = _parse_content_range(response.get("content-range", ""))
                    if size != total:
                        raise DriveIntegrityError(
                            f"Drive now serves {size} bytes for {file.title!r} ({file.id}) but listed {total}: the "
                            "file changed during the download; run again to fetch the new revision"
                        )
                    if first != done:
                        raise http.client.HTTPException(f"asked for bytes from {done}, got a range from {first}")
                elif response.status == 200:
                    # The server ignored Range and sent everything: keep that instead of what we had.
                    if len(content) != total:
                        raise DriveIntegrityError(
                            f"Drive sent {len(content)} bytes for {file.title!r} ({file.id}) but listed {total}: "
                            "the file changed during the download; run again to fetch the new revision"
                        )
                    writer.start_over()
                    done = 0
                else:
                    raise HttpError(response, content, uri=request.uri)
                if not content:
                    raise http.client.HTTPException(f"empty body for bytes {done}-{last}")
                writer.append(content)
                done += len(content)
        finally:
            # Whatever happened, the chunk in flight lands first, so the file and its MD5 state agree.
            writer.close()
    return writer.digest


# --------------------------------------------------------------------------------------------------------------
# Content cache
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedDownload:
    """A verified local copy of a Drive file and whether this call had to download it."""

    path: Path
    file: DriveFile
    downloaded: bool


def safe_filename(title: str) -> str:
    """A Drive title usable as one file name: no separators, no leading dots, not empty."""
    name = re.sub(r"[\x00-\x1f/\\]", "_", title).strip().lstrip(".")
    return name[:200] or "download"


def cache_path_for(cache_dir: Path, file: DriveFile) -> Path:
    """Where a verified copy of this content lives: keyed by file ID and MD5, so a new revision gets a new path."""
    return Path(cache_dir) / "drive" / file.id / str(file.md5) / safe_filename(file.title)


def _remove_stale_parts(cache_dir: Path, file: DriveFile) -> None:
    """Partial downloads of this file's earlier revisions: Drive serves only the head, so they can never finish."""
    for stale in (Path(cache_dir) / "drive" / file.id).glob("*/.*.part"):
        if stale.parent.name != file.md5:
            stale.unlink(missing_ok=True)


def fetch_to_cache(
    drive: GoogleDrive,
    file_id: str,
    cache_dir: Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    retry: RetryPolicy | None = None,
    on_progress: ProgressCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
    logger: Logger = log,
) -> CachedDownload:
    """A verified local copy of the Drive file's current revision, downloaded only if not already cached."""
    file = fetch_file_metadata(drive, file_id, retry=retry, sleep=sleep, logger=logger)
    require_downloadable(file)
    if file.trashed:
        logger.warning("Drive file %s (%s) is in the trash; using it anyway", file.id, file.title)
    target = cache_path_for(cache_dir, file)
    _remove_stale_parts(cache_dir, file)
    # The cached copy was MD5-verified before it was renamed into place and its path holds the MD5, so a size
    # check is enough here; re-hashing a large archive on every run would cost more than it protects.
    if target.is_file() and target.stat().st_size == file.size:
        logger.info(
            "%s (Drive file %s, revision %s, MD5 %s) is unchanged: using %s",
            file.title, file.id, file.revision, file.md5, target,
        )
        return CachedDownload(target, file, downloaded=False)
    kwargs = dict(chunk_bytes=chunk_bytes, retry=retry, on_progress=on_progress, sleep=sleep, logger=logger)
    try:
        download_file(drive, file, target, **kwargs)
    except DriveIntegrityError:
        # A new revision uploaded mid-download looks like corruption; if Drive now lists other content, get that.
        latest = fetch_file_metadata(drive, file_id, retry=retry, sleep=sleep, logger=logger)
        if latest.md5 == file.md5:
            raise
        logger.warning(
            "%s changed on Drive during the download (now revision %s); downloading that", file.title, latest.revision
        )
        require_downloadable(latest)
        file, target = latest, cache_path_for(cache_dir, latest)
        download_file(drive, file, target, **kwargs)
    return CachedDownload(target, file, downloaded=True)
