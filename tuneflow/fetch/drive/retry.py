"""Retrying Drive requests: which failures are transient, how long to wait, and what a permanent one means.

Only failures that may pass are retried (429, 5xx, 403 rate limits, dropped or timed-out connections), with
exponential backoff; a missing file or a file not shared with the service account fails at once, as a
DriveError naming the account to share it with.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httplib2
from googleapiclient.errors import HttpError
from oauth2client.client import AccessTokenRefreshError, HttpAccessTokenRefreshError
from pydrive2.auth import RefreshError
from pydrive2.drive import GoogleDrive
from pydrive2.files import ApiRequestError

from tuneflow.fetch.drive.client import close_connections, service_account_email
from tuneflow.fetch.drive.errors import (
    DriveAccessError,
    DriveCredentialsError,
    DriveError,
    DriveTransientError,
)
from tuneflow.fetch.drive.keys import HOW_TO_GIVE_KEY
from tuneflow.fetch.drive.logs import Logger

T = TypeVar("T")

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


def with_retries(
    what: str,
    call: Callable[[], T],
    drive: GoogleDrive,
    subject_id: str,
    retry: RetryPolicy | None,
    sleep: Callable[[float], None],
    logger: Logger,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """`call()`, repeated after transient failures as `retry` says; a permanent Drive failure is raised as a
    DriveError that says what to do, anything else (a bug, a full disk) as it is. `what` names the request in
    log lines and errors, `subject_id` the file or folder in them."""
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
            close_connections(drive)
            if on_retry:
                on_retry()
            sleep(delay)
    raise AssertionError("unreachable")
