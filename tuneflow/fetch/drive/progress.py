"""Download progress: a record per step for callbacks (progress bars, artifacts) and log lines at every 10%."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tuneflow.fetch.drive.logs import Logger
from tuneflow.fetch.drive.metadata import DriveFile

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


def mib(n_bytes: float) -> str:
    """Bytes as MiB with one decimal, the unit of every download log line."""
    return f"{n_bytes / 2**20:.1f} MiB"


class ProgressReporter:
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
                self.file.title, mib(done), mib(total), 100 * done // max(total, 1), mib(speed),
            )
        if self.callback:
            self.callback(DownloadProgress(self.file.id, self.file.title, done, total, speed))

    def restart(self) -> None:
        self.started, self.resumed_from = time.monotonic(), 0
