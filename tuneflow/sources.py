"""Which file a `source` (or `weights`) setting names: a local path, `drive://ID`, or a Drive share link; and
which Drive API a client talks to (`api_endpoint`, for an emulator).

Standard library only, so validating a config never imports the Drive client.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

DRIVE_SOURCE_FORMS = (
    "drive://FILE_ID",
    "https://drive.google.com/open?id=FILE_ID",
    "https://drive.google.com/file/d/FILE_ID/view?usp=sharing",
    "https://drive.google.com/uc?id=FILE_ID&export=download",
)
ACCEPTED_SOURCES_TEXT = "a local path to a .zip, or a Drive file as " + ", ".join(DRIVE_SOURCE_FORMS)

# Drive IDs are URL-safe base64 (letters, digits, '-', '_'); today's file IDs are 33 characters, older ones 28 or 44.
FILE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{10,128}")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE_HOSTS = {"drive.google.com", "drive.usercontent.google.com"}
_FILE_PATH = re.compile(r"/file(?:/u/\d+)?/d/([^/]+)(?:/[^/]*)?/?")
_ID_QUERY_PATHS = {"/open", "/uc", "/download"}


def parse_drive_source(source: str) -> str | None:
    """The Drive file ID named by `source`, or None when it is a local path.

    Raises ValueError for any other URL, a folder link, or a `drive://` form without a valid ID, listing the
    accepted forms.
    """
    text = source.strip()
    if text.lower().startswith("drive:"):
        file_id = text[len("drive:") :]
        file_id = file_id[2:].strip("/") if file_id.startswith("//") else ""
        if not FILE_ID_PATTERN.fullmatch(file_id):
            raise ValueError(
                f"source {source!r} has no valid Drive file ID after 'drive://' (an ID is 10+ letters, digits, "
                f"'-' or '_', as in the file's share link); accepted: {ACCEPTED_SOURCES_TEXT}"
            )
        return file_id
    if not _URL_SCHEME.match(text):
        return None

    parts = urlsplit(text)
    if parts.scheme.lower() in {"http", "https"} and (parts.hostname or "").lower() in _DRIVE_HOSTS:
        if "/folders/" in parts.path:
            raise ValueError(
                f"source {source!r} is a Drive folder link; share the .zip file itself (its menu → Share → Copy "
                f"link); accepted: {ACCEPTED_SOURCES_TEXT}"
            )
        candidate = None
        if match := _FILE_PATH.fullmatch(parts.path):
            candidate = match.group(1)
        elif parts.path.rstrip("/") in _ID_QUERY_PATHS:
            candidate = parse_qs(parts.query).get("id", [None])[0]
        if candidate and FILE_ID_PATTERN.fullmatch(candidate):
            return candidate
    raise ValueError(f"source {source!r} is not a Drive file link tuneflow understands; give {ACCEPTED_SOURCES_TEXT}")


def normalize_api_endpoint(endpoint: str | None) -> str | None:
    """The Drive API base URL with one trailing slash, or None (Google's) when unset or blank.

    The client replaces rootUrl + servicePath of the bundled v2 discovery document with it, so it must end in
    /drive/v2/. Raises ValueError naming the value otherwise.
    """
    if endpoint is None or not endpoint.strip():
        return None
    endpoint = endpoint.strip().rstrip("/") + "/"
    if not re.match(r"https?://", endpoint) or not endpoint.endswith("/drive/v2/"):
        raise ValueError(
            f"api_endpoint {endpoint!r} must be an http(s) URL ending in /drive/v2/, "
            "e.g. http://127.0.0.1:8080/drive/v2/ (leave it unset for Google Drive itself)"
        )
    return endpoint
