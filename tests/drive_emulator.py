"""A local Google Drive v2 API emulator: a real HTTP server on 127.0.0.1 speaking what pydrive2 sends.

It serves the service-account token endpoint (a signed JWT in, a bearer token out), file metadata with `fields`,
`alt=media` content with Range / 206 / Content-Range (streamed from disk, so a 1 GiB file costs no memory),
folder listings with the `q` / `orderBy` that `find_newest_file` sends, and Drive's JSON error bodies. Tests
add files, folders and Google Docs, upload new revisions under the same ID, inject faults (errors, dropped
connections, corrupted bytes, stalls) and count the requests that reached it.

Run it by hand (for curl or a manual pydrive2 session): `python -m tests.drive_emulator FILE [FILE...]`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
GOOGLE_DOC_MIME_TYPE = "application/vnd.google-apps.document"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
Route = Literal["token", "metadata", "media", "list"]
STREAM_BLOCK_BYTES = 1024 * 1024


def new_drive_id() -> str:
    """An ID shaped like today's Drive file IDs (33 URL-safe characters starting with 1)."""
    return "1" + secrets.token_urlsafe(24)[:32]


@dataclass
class Revision:
    id: str
    path: Path
    size: int
    md5: str


@dataclass
class EmulatedFile:
    id: str
    title: str
    mime_type: str
    parents: list[str]
    created: datetime
    modified: datetime
    revisions: list[Revision] = field(default_factory=list)
    trashed: bool = False
    readers: set[str] | None = None  # None: every service account may read it

    @property
    def head(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next `times` matching requests."""

    route: Route
    kind: Literal["error", "drop", "corrupt", "stall"]
    times: int
    file_id: str | None = None
    status: int = 503
    reason: str = "backendError"
    message: str = "Backend Error"
    after_bytes: int | None = None  # drop / stall: body bytes sent first (None: half of the response)
    seconds: float = 0.0  # stall: how long to hold the connection silent
    html: bool = False  # error: an HTML page instead of Drive's JSON, as a proxy or load balancer sends


@dataclass(frozen=True)
class RequestRecord:
    route: str
    method: str
    file_id: str | None
    range: str | None
    status: int
    query: dict[str, str]
    fault: str | None = None  # the injected fault that hit this request, if any


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _split_top_level(text: str) -> list[str]:
    """Split a Drive `fields` value on the commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def select_fields(resource: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """Apply a partial-response `fields` selector such as `id,title,labels(trashed)` or `items(id),nextPageToken`."""
    if not fields or fields == "*":
        return resource
    selected: dict[str, Any] = {}
    for spec in _split_top_level(fields):
        name, _, inner = spec.partition("(")
        name = name.strip()
        if name not in resource:
            continue
        value = resource[name]
        if inner:
            inner = inner[:-1]
            if isinstance(value, list):
                value = [select_fields(item, inner) for item in value]
            elif isinstance(value, dict):
                value = select_fields(value, inner)
        selected[name] = value
    return selected


class QueryError(ValueError):
    pass


_CLAUSES = [
    (re.compile(r"title\s*=\s*'((?:[^'\\]|\\.)*)'"), "title"),
    (re.compile(r"'((?:[^'\\]|\\.)*)'\s+in\s+parents"), "parent"),
    (re.compile(r"trashed\s*=\s*(true|false)"), "trashed"),
    (re.compile(r"mimeType\s*!=\s*'((?:[^'\\]|\\.)*)'"), "not_mime"),
    (re.compile(r"mimeType\s*=\s*'((?:[^'\\]|\\.)*)'"), "mime"),
]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def compile_query(q: str):
    """A predicate for the subset of Drive's query language we use: clauses joined by `and`.

    Anything else is a 400, as Drive answers an invalid query, so a changed query fails loudly in the tests.
    """
    tests = []
    for clause in re.split(r"\s+and\s+", q.strip()):
        for pattern, kind in _CLAUSES:
            if match := pattern.fullmatch(clause.strip()):
                value = match.group(1)
                break
        else:
            raise QueryError(f"unsupported query clause {clause!r}")
        if kind == "title":
            tests.append(lambda f, v=_unescape(value): f.title == v)
        elif kind == "parent":
            tests.append(lambda f, v=_unescape(value): v in f.parents)
        elif kind == "trashed":
            tests.append(lambda f, v=(value == "true"): f.trashed == v)
        elif kind == "not_mime":
            tests.append(lambda f, v=_unescape(value): f.mime_type != v)
        else:
            tests.append(lambda f, v=_unescape(value): f.mime_type == v)
    return lambda f: all(test(f) for test in tests)


class DriveEmulator:
    """The emulated Drive: state, fault injection and request log, plus the server thread."""

    def __init__(self, *, storage_dir: Path | None = None, token_lifetime_s: int = 3600, honor_ranges: bool = True):
        self._owns_storage = storage_dir is None
        self.storage_dir = Path(storage_dir or tempfile.mkdtemp(prefix="drive-emulator-"))
        self.token_lifetime_s = token_lifetime_s
        self.honor_ranges = honor_ranges
        self.files: dict[str, EmulatedFile] = {}
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (service-account email, expiry epoch)
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._clock = itertools.count()
        self._epoch = datetime(2025, 1, 1, tzinfo=timezone.utc)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> DriveEmulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="drive-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._owns_storage:
            shutil.rmtree(self.storage_dir, ignore_errors=True)

    def __enter__(self) -> DriveEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server, "start() the emulator first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.base_url}/drive/v2/"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    # ---------------------------------------------------------------- accounts and tokens
    def register_service_account(self, email: str, public_key: rsa.RSAPublicKey) -> None:
        """Accept JWTs from `email` signed by the matching private key."""
        with self._lock:
            self.service_accounts[email] = public_key

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token (as if they had expired): the next API call gets a 401."""
        with self._lock:
            self.tokens.clear()

    def issue_token(self, email: str) -> str:
        """An access token for `email`, as the token endpoint would issue (for curl in the benchmark)."""
        token = "ya29.emulated-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = (email, time.time() + self.token_lifetime_s)
        return token

    # ---------------------------------------------------------------- content
    def _tick(self) -> datetime:
        # A clock that moves one second per change, so "newest" is deterministic however fast a test runs.
        return self._epoch + timedelta(seconds=next(self._clock))

    def _store(self, content: bytes | Path) -> Revision:
        revision_id = "0B" + secrets.token_urlsafe(18)
        if isinstance(content, Path):
            path = content  # served straight from where it lies: the benchmark's 1 GiB file is never copied
        else:
            path = self.storage_dir / revision_id
            path.write_bytes(content)
        digest = hashlib.md5()
        with path.open("rb") as handle:
            while block := handle.read(STREAM_BLOCK_BYTES):
                digest.update(block)
        return Revision(revision_id, path, path.stat().st_size, digest.hexdigest())

    def add_file(
        self,
        title: str,
        content: bytes | Path,
        *,
        parents: Iterable[str] = (),
        mime_type: str = "application/zip",
        file_id: str | None = None,
        readers: set[str] | None = None,
    ) -> str:
        revision = self._store(content)
        now = self._tick()
        with self._lock:
            file = EmulatedFile(
                id=file_id or new_drive_id(), title=title, mime_type=mime_type, parents=list(parents),
                created=now, modified=now, revisions=[revision], readers=readers,
            )
            self.files[file.id] = file
        return file.id

    def add_folder(self, title: str, *, parents: Iterable[str] = ()) -> str:
        return self._add_contentless(title, FOLDER_MIME_TYPE, parents)

    def add_google_doc(self, title: str, *, parents: Iterable[str] = ()) -> str:
        return self._add_contentless(title, GOOGLE_DOC_MIME_TYPE, parents)

    def _add_contentless(self, title: str, mime_type: str, parents: Iterable[str]) -> str:
        now = self._tick()
        with self._lock:
            file = EmulatedFile(new_drive_id(), title, mime_type, list(parents), now, now)
            self.files[file.id] = file
        return file.id

    def upload_revision(self, file_id: str, content: bytes | Path) -> str:
        """Drive's "Manage versions → Upload new version": same ID, new head revision and MD5."""
        revision = self._store(content)
        with self._lock:
            file = self.files[file_id]
            file.revisions.append(revision)
            file.modified = self._tick()
        return revision.id

    def trash(self, file_id: str) -> None:
        with self._lock:
            self.files[file_id].trashed = True
            self.files[file_id].modified = self._tick()

    def share(self, file_id: str, *emails: str) -> None:
        with self._lock:
            file = self.files[file_id]
            file.readers = (file.readers or set()) | set(emails)

    def metadata(self, file: EmulatedFile) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "kind": "drive#file",
            "id": file.id,
            "etag": f'"{file.id}-{len(file.revisions)}-{int(file.trashed)}"',
            "title": file.title,
            "mimeType": file.mime_type,
            "createdDate": _rfc3339(file.created),
            "modifiedDate": _rfc3339(file.modified),
            "labels": {"starred": False, "hidden": False, "trashed": file.trashed, "restricted": False, "viewed": True},
            "explicitlyTrashed": file.trashed,
            "parents": [{"kind": "drive#parentReference", "id": parent} for parent in file.parents],
            "version": str(len(file.revisions) + int(file.trashed)),
        }
        if head := file.head:
            resource.update(
                fileSize=str(head.size),
                md5Checksum=head.md5,
                headRevisionId=head.id,
                downloadUrl=f"{self.api_endpoint}files/{file.id}?alt=media",
            )
        return resource

    # ---------------------------------------------------------------- faults
    def fail(
        self, route: Route = "media", status: int = 503, reason: str = "backendError", message: str = "Backend Error",
        *, times: int = 1, file_id: str | None = None, html: bool = False,
    ) -> None:
        """Answer the next `times` matching requests with a Drive JSON error (or an HTML error page)."""
        self.faults.append(Fault(route, "error", times, file_id, status, reason, message, html=html))

    def drop_connection(self, *, after_bytes: int | None = None, times: int = 1, file_id: str | None = None) -> None:
        """Send the headers (full Content-Length) and part of the body, then close the connection."""
        self.faults.append(Fault("media", "drop", times, file_id, after_bytes=after_bytes))

    def corrupt(self, *, times: int = 1, file_id: str | None = None) -> None:
        """Flip bytes in the next `times` media responses (an MD5 mismatch for the client)."""
        self.faults.append(Fault("media", "corrupt", times, file_id))

    def stall(self, seconds: float, *, route: Route = "media", after_bytes: int | None = 0, times: int = 1) -> None:
        """Go silent for `seconds` (after `after_bytes` of the body) on the next `times` requests: a slow server."""
        self.faults.append(Fault(route, "stall", times, after_bytes=after_bytes, seconds=seconds))

    def _take_fault(self, route: str, file_id: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.route == route and fault.times > 0 and fault.file_id in (None, file_id):
                    fault.times -= 1
                    return fault
        return None

    # ---------------------------------------------------------------- request log
    def count(self, route: Route | None = None, *, file_id: str | None = None) -> int:
        with self._lock:
            return sum(
                1 for record in self.requests
                if (route is None or record.route == route) and (file_id is None or record.file_id == file_id)
            )

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)


_GOOGLE_ERRORS = {
    401: ("authError", "Invalid Credentials"),
    404: ("notFound", "File not found"),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like Google; every response carries Content-Length
    # Headers and body go out in two writes; with Nagle on, the body would wait for the client's delayed ACK
    # (40 ms per request), a cost Google's servers do not have.
    disable_nagle_algorithm = True
    emulator: DriveEmulator

    def log_message(self, format: str, *args: Any) -> None:  # the request log is kept on the emulator instead
        pass

    # ---------------------------------------------------------------- plumbing
    def _send_json(self, status: int, body: dict[str, Any], extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, reason: str, message: str, domain: str = "global") -> None:
        self._send_json(
            status,
            {"error": {"code": status, "message": message, "errors": [{"domain": domain, "reason": reason, "message": message}]}},
        )

    def _send_html(self, status: int, message: str) -> None:
        data = f"<html><body><h1>{status}</h1><p>{message}</p></body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log(
        self, route: str, file_id: str | None, status: int, query: dict[str, str], fault: Fault | None = None
    ) -> None:
        record = RequestRecord(
            route, self.command, file_id, self.headers.get("Range"), status, query, fault.kind if fault else None
        )
        self.emulator._record(record)

    def _drain_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _pause(self, seconds: float) -> None:
        self.emulator._stopping.wait(seconds)

    # ---------------------------------------------------------------- token endpoint
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        body = self._drain_body()
        if path != "/token":
            self._send_error(404, "notFound", f"no such endpoint {path}")
            return
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        fault = self.emulator._take_fault("token", None)
        if fault and fault.kind == "error":
            self._log("token", None, fault.status, {})
            self._send_json(fault.status, {"error": fault.reason, "error_description": fault.message})
            return
        status, response = self._token_response(form)
        self._log("token", None, status, {})
        self._send_json(status, response)

    def _token_response(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        try:
            header_b64, payload_b64, signature_b64 = form["assertion"].split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(payload_b64))
            signature = _b64url_decode(signature_b64)
        except (KeyError, ValueError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: not a signed JWT."}
        if header.get("alg") != "RS256":
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: alg {header.get('alg')!r}."}
        public_key = self.emulator.service_accounts.get(claims.get("iss", ""))
        if public_key is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        try:
            public_key.verify(signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims.get("aud") != self.emulator.token_uri:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT audience {claims.get('aud')!r}."}
        now = time.time()
        if not (claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0)):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: token must be a short-lived token."}
        if "auth/drive" not in str(claims.get("scope", "")):
            return 400, {"error": "invalid_scope", "error_description": "No Drive scope requested."}
        token = self.emulator.issue_token(claims["iss"])
        return 200, {"access_token": token, "expires_in": self.emulator.token_lifetime_s, "token_type": "Bearer"}

    # ---------------------------------------------------------------- Drive API
    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        if path == "/drive/v2/files":
            route, file_id = "list", None
        elif match := re.fullmatch(r"/drive/v2/files/([^/]+)", path):
            file_id = match.group(1)
            route = "media" if query.get("alt") == "media" else "metadata"
        else:
            self._log("unknown", None, 404, query)
            self._send_error(404, "notFound", f"no such endpoint {path}")
            return

        email = self._caller()
        if email is None:
            self._log(route, file_id, 401, query)
            self._send_json(
                401,
                {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                           "errors": [{"domain": "global", "reason": "authError", "message": "Invalid Credentials",
                                       "locationType": "header", "location": "Authorization"}]}},
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
            return

        fault = self.emulator._take_fault(route, file_id)
        if fault and fault.kind == "error":
            self._log(route, file_id, fault.status, query, fault)
            if fault.html:
                self._send_html(fault.status, fault.message)
            else:
                domain = "usageLimits" if "RateLimit" in fault.reason else "global"
                self._send_error(fault.status, fault.reason, fault.message, domain)
            return
        if fault and fault.kind == "stall" and route != "media":
            self._pause(fault.seconds)

        if route == "list":
            self._list(query, email)
            return
        with self.emulator._lock:
            file = self.emulator.files.get(file_id)
            visible = file is not None and (file.readers is None or email in file.readers)
        if not visible:
            self._log(route, file_id, 404, query)
            self._send_error(404, "notFound", f"File not found: {file_id}")
            return
        if route == "metadata":
            self._log(route, file_id, 200, query)
            self._send_json(200, select_fields(self.emulator.metadata(file), query.get("fields")))
            return
        self._media(file, fault, query)

    def _caller(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self.emulator._lock:
            entry = self.emulator.tokens.get(auth.removeprefix("Bearer ").strip())
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def _list(self, query: dict[str, str], email: str) -> None:
        try:
            matches = compile_query(query.get("q", ""))
        except QueryError as error:
            self._log("list", None, 400, query)
            self._send_error(400, "invalid", f"Invalid query: {error}")
            return
        order = query.get("orderBy", "")
        if order not in ("", "modifiedDate desc"):
            self._log("list", None, 400, query)
            self._send_error(400, "invalid", f"Unsupported orderBy {order!r}")
            return
        with self.emulator._lock:
            found = [
                file for file in self.emulator.files.values()
                if (file.readers is None or email in file.readers) and matches(file)
            ]
            if order:
                found.sort(key=lambda file: file.modified, reverse=True)
            limit = int(query.get("maxResults", 100))
            page = [self.emulator.metadata(file) for file in found[:limit]]
        body: dict[str, Any] = {"kind": "drive#fileList", "items": page}
        if len(found) > limit:
            body["nextPageToken"] = "page-2"
        self._log("list", None, 200, query)
        self._send_json(200, select_fields(body, query.get("fields")))

    def _media(self, file: EmulatedFile, fault: Fault | None, query: dict[str, str]) -> None:
        head = file.head
        if head is None:
            self._log("media", file.id, 403, query)
            self._send_error(
                403, "fileNotDownloadable",
                "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
            )
            return
        first, last, status = 0, head.size - 1, 200
        range_header = self.headers.get("Range")
        if range_header and self.emulator.honor_ranges:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match:
                first = int(match.group(1))
                last = min(int(match.group(2)), head.size - 1) if match.group(2) else head.size - 1
                if first >= head.size or first > last:
                    self._log("media", file.id, 416, query)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{head.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = last - first + 1
        self._log("media", file.id, status, query, fault)
        self.send_response(status)
        self.send_header("Content-Type", file.mime_type)
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{head.size}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        try:
            self._send_body(head.path, first, length, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing more to do

    def _send_body(self, path: Path, first: int, length: int, fault: Fault | None) -> None:
        with path.open("rb") as handle:
            if fault is None:
                self.wfile.flush()
                # Zero-copy from the page cache: the server must not be what limits the benchmark.
                self.connection.sendfile(handle, offset=first, count=length)
                return
            handle.seek(first)
            if fault.kind == "corrupt":
                data = bytearray(handle.read(length))
                for index in range(0, len(data), 4096):
                    data[index] ^= 0xFF
                self.wfile.write(bytes(data))
                return
            cut = length // 2 if fault.after_bytes is None else min(fault.after_bytes, length)
            self.wfile.write(handle.read(cut))
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind == "stall":
                self._pause(fault.seconds)
                self.wfile.write(handle.read(length - cut))


def main(argv: list[str] | None = None) -> None:
    """Serve files by hand and print a curl line for each (the token is issued for a made-up account)."""
    import argparse
    import signal
    import sys

    # `timeout` and service managers stop with SIGTERM: leave through the context manager all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    with DriveEmulator() as emulator:
        token = emulator.issue_token("manual@emulator.iam.gserviceaccount.com")
        for path in args.files:
            file_id = emulator.add_file(path.name, path.resolve())
            print(f"curl -H 'Authorization: Bearer {token}' '{emulator.api_endpoint}files/{file_id}?alt=media' -o {path.name}")
        print(f"api_endpoint: {emulator.api_endpoint}  (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
