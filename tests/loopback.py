"""Loopback servers for the tests: free ports (Prefect server, TensorFlow cluster workers) and a webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the OS picks it; the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebhookReceiver:
    """What an alert webhook (Slack's incoming webhook, say) received: each POST's JSON body, in order."""

    def __init__(self, url: str):
        self.url = url
        self.bodies: list[dict] = []
        self._arrived = threading.Condition()

    def record(self, body: dict) -> None:
        with self._arrived:
            self.bodies.append(body)
            self._arrived.notify_all()

    def wait_for(self, matches: Callable[[dict], bool], timeout_s: float) -> dict:
        """The first body that matches, waiting up to timeout_s for it to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while True:
                found = [body for body in self.bodies if matches(body)]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no matching webhook body within {timeout_s}s; received: {self.bodies}"
                self._arrived.wait(remaining)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps its JSON body."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/tuneflow")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", 0))
            receiver.record(json.loads(self.rfile.read(length) or b"null"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")  # what Slack answers

        def log_message(self, *args) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
