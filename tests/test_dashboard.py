"""The dashboard's artifacts: keys of one dataset, and updates that never fail the step they show.

A Prefect API that answers every request with an error stands in for a server in trouble; the steps' own code
(the Drive download with its progress bar, the data tables, the training progress bar) runs against it and must
finish, saying in a warning what the dashboard missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import TypeAdapter

from tests.drive_fixtures import drive, drive_emulator, key_file, test_key  # noqa: F401 (fixtures)
from tuneflow.tasks.dashboard import ARTIFACT_TYPES, ArtifactKeys, ProgressBar, key_name

# The steps call these inside their task runs; here they run bare, which Prefect 3.9 warns is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Artifact creation outside of a flow or task run")

HOSTILE_NAME = "../../Crème Brûlée <script>alert(1)</script> & 日本語_v2"


def test_two_datasets_never_share_a_key_and_every_key_is_one_prefect_accepts():
    from prefect.types.names import ArtifactKey

    food, flowers = ArtifactKeys.for_dataset("food"), ArtifactKeys.for_dataset("Flowers 2026")
    assert food.key("report") == "tuneflow-food-report"
    assert flowers.key("report") == "tuneflow-flowers-2026-report"
    assert not set(food.all().values()) & set(flowers.all().values())
    hostile = ArtifactKeys.for_dataset(HOSTILE_NAME)
    assert hostile.key("report") == "tuneflow-creme-brulee-script-alert-1-script-v2-report"
    for key in [*food.all().values(), *hostile.all().values(), ArtifactKeys.for_dataset("日本語").key("history")]:
        TypeAdapter(ArtifactKey).validate_python(key)  # Prefect's own rule: lowercase letters, digits, dashes
    # A name with nothing left once cleaned still gets a key of its own.
    assert key_name("日本語") != key_name("中文") and key_name("日本語").isalnum()
    assert set(food.all()) == set(ARTIFACT_TYPES)


def test_runs_outside_a_deployment_without_a_dataset_name_use_local():
    assert ArtifactKeys.for_dataset(None).key("history") == "tuneflow-local-history"


class FailingApi(ThreadingHTTPServer):
    """Answers every request with HTTP 500 and counts them."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                server.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"detail": "database is locked"}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def failing_api() -> Iterator[FailingApi]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = FailingApi()
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{api.server_address[1]}/api"}):
            yield api
    finally:
        api.shutdown()
        api.server_close()


class Warnings(logging.Handler):
    """The dashboard module's warnings (its own handler: Prefect's logging set-up may replace caplog's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    handler, logger = Warnings(), logging.getLogger("tuneflow.tasks.dashboard")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def test_a_download_finishes_while_the_dashboard_fails_and_says_so_once(drive, drive_emulator, tmp_path,
                                                                          failing_api, warnings):
    from tuneflow.fetch.drive.cache import fetch_to_cache
    from tuneflow.tasks.fetch import progress_artifact_updater

    payload = bytes(range(256)) * 4096  # 1 MiB in 10 chunks: 10 progress callbacks
    file_id = drive_emulator.add_file("dataset.zip", payload)
    cached = fetch_to_cache(drive, file_id, tmp_path / "cache", chunk_bytes=len(payload) // 10,
                            on_progress=progress_artifact_updater("tuneflow-food-dataset-download"))
    assert cached.path.read_bytes() == payload
    (warning,) = warnings
    assert "download progress (tuneflow-food-dataset-download) was not updated" in warning and "500" in warning
    # One failed call (its first request fails), then the bar waits before trying again instead of failing once
    # per chunk.
    assert len(failing_api.requests) == 1, failing_api.requests


def test_the_data_tables_and_the_training_bar_fail_without_failing_their_step(tiny_dataset, failing_api, warnings):
    from tuneflow.tasks.prepare import publish_data_artifacts

    keys = ArtifactKeys.for_dataset("food")
    publish_data_artifacts(tiny_dataset, keys)  # returns: the prepared dataset stays the step's result
    bar = ProgressBar(keys.key("training-progress"), "training progress bar")
    for percent in (0.0, 50.0, 100.0):
        bar.update(percent)
    assert [w.split(" was not updated")[0] for w in warnings] == [
        "the dashboard's dataset counts table", "the dashboard's dataset manifest table",
        "the dashboard's training progress bar"]
    assert bar.artifact_id is None and len(failing_api.requests) == 3
