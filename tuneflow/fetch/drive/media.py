"""Streaming a file's bytes from Drive: Range requests whose bodies are read into reusable buffers, never whole.

Why not pydrive2's authorized httplib2 client, which every other request uses: httplib2 returns a body only
whole, as a new bytes object. For a 16 MiB chunk that is 16 MiB of fresh memory the kernel zero-fills and maps
page by page, then a copy into the file, then the MD5 reading it back from memory: measured, 4.5 CPU seconds for
1 GiB where curl spends 1.7, and the download ran at 0.54x curl's speed. Here the body goes through
`http.client` (what httplib2 is built on) into a few 1 MiB buffers that stay in the CPU's cache while they are
written and hashed, on one kept-alive connection per download.

What httplib2 did for us is done here too: the bearer token of pydrive2's service-account credentials (minted or
renewed from the key when it is missing or expired, and once more when Drive answers 401), the HTTP timeout, the
proxy from the environment (`https_proxy`, `no_proxy`, ...), certificates from httplib2's bundle, and error
answers raised as googleapiclient's HttpError, so tuneflow.fetch.drive.retry classifies them as it does every other
request's.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import urllib.parse
import urllib.request
from typing import Any

import httplib2
from googleapiclient.errors import HttpError
from pydrive2.drive import GoogleDrive

# Enough of an error body to read Drive's JSON reason; a proxy's error page is not read whole.
ERROR_BODY_LIMIT = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class MediaClient:
    """GET requests with a Range header to Drive's media URIs, on one connection kept alive between them."""

    def __init__(self, drive: GoogleDrive):
        self.drive = drive
        self.timeout_s = drive.auth.http_timeout
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int] | None = None
        self._proxy_headers: dict[str, str] | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._origin = None

    def __enter__(self) -> MediaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_range(self, uri: str, first: int, last: int) -> http.client.HTTPResponse:
        """The response to `GET uri` for bytes first..last, its body unread; an error answer raises HttpError.

        The caller reads the body (or closes the client): the connection carries the next request only after.
        """
        renewed = False
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(uri, {"range": f"bytes={first}-{last}", "authorization": self._bearer()})
            if response.status == 401 and not renewed:
                self.close()  # its body unread: this connection cannot carry another request
                self._renew_token()
                renewed = True
                continue
            if response.status in REDIRECTS and response.getheader("location"):
                self.close()
                uri = urllib.parse.urljoin(uri, response.getheader("location"))
                continue
            if response.status >= 300:
                content = response.read(ERROR_BODY_LIMIT)
                self.close()  # the rest of an error body is not worth reading to reuse the connection
                raise HttpError(_httplib2_response(response), content, uri=uri)
            return response
        raise http.client.HTTPException(f"more than {MAX_REDIRECTS} redirects for {uri}")

    def _bearer(self) -> str:
        credentials = self.drive.auth.credentials
        return f"Bearer {credentials.get_access_token(self._token_http()).access_token}"

    def _renew_token(self) -> None:
        self.drive.auth.credentials.refresh(self._token_http())

    def _token_http(self) -> httplib2.Http:
        # A plain client with the same timeout pydrive2 gives its own: the token request must not hang either.
        return httplib2.Http(timeout=self.timeout_s)

    def _send(self, uri: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        url = urllib.parse.urlsplit(uri)
        port = url.port or (443 if url.scheme == "https" else 80)
        origin = (url.scheme, url.hostname or "", port)
        if self._connection is None or self._origin != origin:
            self.close()
            self._connection, self._proxy_headers = _connect(origin, self.timeout_s)
            self._origin = origin
        # Plain HTTP through a proxy names the whole URI (and carries the proxy's login); HTTPS tunnels through.
        target = uri if self._proxy_headers is not None else urllib.parse.urlunsplit(("", "", url.path, url.query, ""))
        try:
            self._connection.request(
                "GET", target, headers={**headers, **(self._proxy_headers or {}), "accept-encoding": "identity"}
            )
            return self._connection.getresponse()
        except BaseException:
            self.close()  # a half-used connection is never reused
            raise


def _connect(
    origin: tuple[str, str, int], timeout_s: float | None
) -> tuple[http.client.HTTPConnection, dict[str, str] | None]:
    """A connection to origin, through the environment's proxy when one applies; with the headers each request
    must carry when it goes to a plain HTTP proxy (None otherwise)."""
    scheme, host, port = origin
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and urllib.request.proxy_bypass(host):
        proxy = None
    context = ssl.create_default_context(cafile=httplib2.certs.where()) if scheme == "https" else None
    if not proxy:
        if context is not None:
            return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context), None
        return http.client.HTTPConnection(host, port, timeout=timeout_s), None
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    proxy_headers = {}
    if parsed.username:
        login = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
        proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    proxy_port = parsed.port or 8080
    if context is None:
        return http.client.HTTPConnection(parsed.hostname or "", proxy_port, timeout=timeout_s), proxy_headers
    connection = http.client.HTTPSConnection(parsed.hostname or "", proxy_port, timeout=timeout_s, context=context)
    connection.set_tunnel(host, port, headers=proxy_headers)
    return connection, None


def _httplib2_response(response: http.client.HTTPResponse) -> Any:
    """The answer as googleapiclient's HttpError expects it (an httplib2.Response: headers and .status)."""
    answer = httplib2.Response({name.lower(): value for name, value in response.getheaders()})
    answer.status, answer.reason = response.status, response.reason
    return answer
