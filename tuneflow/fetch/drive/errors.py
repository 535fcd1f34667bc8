"""What can go wrong with a Drive download, as exception types callers (and retry conditions) can tell apart."""

from __future__ import annotations


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
