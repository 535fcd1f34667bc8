"""The download: bounded Range requests into a `.part` file next to the target, resumed after a failure, checked
against Drive's size and MD5, then renamed into place. The target changes only when the whole file is verified.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydrive2.drive import GoogleDrive

from tuneflow.checksums import md5_state_of_file
from tuneflow.fetch.drive.errors import DriveIntegrityError
from tuneflow.fetch.drive.logs import Logger, log
from tuneflow.fetch.drive.media import MediaClient
from tuneflow.fetch.drive.metadata import DriveFile, require_downloadable
from tuneflow.fetch.drive.part_writer import PartWriter
from tuneflow.fetch.drive.progress import ProgressCallback, ProgressReporter, mib
from tuneflow.fetch.drive.retry import RetryPolicy, with_retries

# The bytes one Range request asks for. Bodies stream through a few 1 MiB buffers (tuneflow.fetch.drive.part_writer),
# so this no longer bounds memory; it is how much a retry may re-request and how often progress is reported:
# 64 MiB is 16 requests for 1 GiB on one kept-alive connection.
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024


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
            logger.info("%s: resuming from %s already on disk at %s", file.title, mib(done), part)
        else:
            logger.info(
                "Downloading %s (Drive file %s, revision %s, %s) to %s",
                file.title, file.id, file.revision, mib(file.size), target,
            )
        reporter = ProgressReporter(file, logger, on_progress, done)
        state = {"digest": digest}  # the MD5 of what is in `part`, kept across retries

        def fetch_rest() -> None:
            _fetch_missing_bytes(drive, file, part, state, chunk_bytes, reporter)

        try:
            with_retries(f"downloading {file.title!r} ({file.id})", fetch_rest, drive, file.id, retry, sleep, logger)
        except DriveIntegrityError:
            part.unlink(missing_ok=True)  # the file changed on Drive: these bytes can never be completed
            raise
        size, md5 = part.stat().st_size, state["digest"].hexdigest()
        if size == file.size and md5 == file.md5:
            os.replace(part, target)  # atomic: readers see the old file or the complete new one
            elapsed = time.monotonic() - reporter.started
            logger.info(
                "Downloaded %s (%s, MD5 %s verified) in %.1f s, %s/s",
                file.title, mib(file.size), md5, elapsed, mib(reporter.speed(file.size)),
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


def _fetch_missing_bytes(
    drive: GoogleDrive, file: DriveFile, part: Path, state: dict[str, Any], chunk_bytes: int,
    reporter: ProgressReporter,
) -> None:
    """Append the bytes after the end of `part` to it, one Range request per chunk, keeping state["digest"] the
    MD5 of every byte in `part`, whether this returns or raises."""
    total = file.size or 0
    uri = drive.auth.service.files().get_media(fileId=file.id, acknowledgeAbuse=False).uri
    # "ab": what is already on disk is kept and extended. A failure mid-request keeps the bytes that arrived:
    # the file and its MD5 state always agree, and the retry asks for the rest.
    with part.open("ab", buffering=0) as out, MediaClient(drive) as client:
        writer = PartWriter(out, state["digest"])
        try:
            done = writer.written
            while done < total:
                last = min(done + chunk_bytes, total) - 1
                response = client.get_range(uri, done, last)
                if response.status == 206:
                    first, end, size = _parse_content_range(response.getheader("content-range", ""))
                    if size != total:
                        raise DriveIntegrityError(
                            f"Drive now serves {size} bytes for {file.title!r} ({file.id}) but listed {total}: the "
                            "file changed during the download; run again to fetch the new revision"
                        )
                    if first != done:
                        raise http.client.HTTPException(f"asked for bytes from {done}, got a range from {first}")
                    expected = end - first + 1
                elif response.status == 200:
                    # The server ignored Range and sends everything: keep that instead of what we had.
                    expected = int(response.getheader("content-length") or -1)
                    if expected != total:
                        raise DriveIntegrityError(
                            f"Drive sent {expected} bytes for {file.title!r} ({file.id}) but listed {total}: "
                            "the file changed during the download; run again to fetch the new revision"
                        )
                    writer.start_over()
                    reporter.restart()
                    done = 0
                else:
                    raise http.client.HTTPException(f"unexpected HTTP {response.status} for a Range request")
                if expected < 1:
                    raise http.client.HTTPException(f"empty body for bytes {done}-{last}")
                _stream_body(response, writer, expected)
                writer.wait()
                done = writer.written
                reporter.update(done)
        finally:
            # Whatever happened, the bytes received land first, so the file and its MD5 state agree.
            writer.close()
            state["digest"] = writer.digest  # a new one if the server made us start over


def _stream_body(response: http.client.HTTPResponse, writer: PartWriter, length: int) -> None:
    """Read exactly `length` body bytes into the writer's buffers; a connection that ends early raises."""
    remaining = length

    def read_into(buffer: memoryview) -> int:
        return response.readinto(buffer[: min(len(buffer), remaining)])

    while remaining:
        received = writer.fill(read_into)  # http.client raises IncompleteRead when the body ends short
        if not received:
            raise http.client.IncompleteRead(b"", remaining)
        remaining -= received


def _parse_content_range(value: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value.strip())
    if not match:
        raise http.client.HTTPException(f"unreadable Content-Range {value!r}")
    first, last, total = (int(group) for group in match.groups())
    return first, last, total
