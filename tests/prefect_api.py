"""For tests that talk to a Prefect server: a forwarder in front of it that can drop chosen requests, and the
drain of Prefect's process-wide queues before a server (or forwarder) they report to goes away."""

from __future__ import annotations

import re
import socket
import threading

# The first line of an HTTP/1.1 request. A client sends each request of a kept-alive connection only after the
# previous answer, so each request starts a fresh read; websocket frames after an upgrade never match.
REQUEST_LINE = re.compile(rb"^(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+) HTTP/1\.[01]\r\n")


class DroppingForwarder:
    """A TCP forwarder on loopback to a Prefect server that closes the connection, unanswered, on every request
    whose path matches `dropping`: to the client, the server is unreachable for exactly those requests."""

    def __init__(self, upstream_url: str) -> None:
        host, port = re.match(r"https?://([^:/]+):(\d+)", upstream_url).groups()
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropping: re.Pattern[str] | None = None
        self.dropped: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        try:
            while data := client.recv(65536):
                request = REQUEST_LINE.match(data)
                if request and self.dropping and self.dropping.search(path := request.group(1).decode()):
                    self.dropped.append(path)
                    break
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for end in (client, upstream):
                end.close()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def drain_prefect_queues() -> None:
    """Deliver what Prefect's process-wide log and event queues hold, and end them, while their server is up.

    They are made once per process and keep the API URL they were made with. Left bound to a server a test then
    stops, every later event of this pytest process went to that dead server, and the Prefect test harness's own
    drain at the end of the session waited about a minute per undelivered event (a CI run stuck in teardown).
    Drained here, the next flow in this process makes new ones for the server it reports to.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for queue in (APILogWorker, EventsWorker):
        queue.drain_all(timeout=60)
