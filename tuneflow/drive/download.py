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

from googleapiclient.errors import HttpError
from pydrive2.drive import GoogleDrive

from tuneflow.checksums import md5_state_of_file
from tuneflow.drive.client import thread_http
from tuneflow.drive.errors import DriveIntegrityError
from tuneflow.drive.logs import Logger, log
from tuneflow.drive.metadata import DriveFile, require_downloadable
from tuneflow.drive.part_writer import PartWriter
from tuneflow.drive.progress import ProgressCallback, ProgressReporter, mib
from tuneflow.drive.retry import RetryPolicy, with_retries

# Each Range request is read whole into memory by httplib2, so this bounds the download's memory; 16 MiB keeps
# the per-request overhead negligible (64 requests for 1 GiB).
DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024


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
        state = {"digest": digest}

        def fetch_rest() -> None:
            state["digest"] = _fetch_missing_bytes(drive, file, part, state["digest"], chunk_bytes, reporter)

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
    drive: GoogleDrive, file: DriveFile, part: Path, digest: Any, chunk_bytes: int, reporter: ProgressReporter
) -> Any:
    """Append the bytes after the end of `part` to it, one Range request per chunk; returns the MD5 state."""
    total = file.size or 0
    request = drive.auth.service.files().get_media(fileId=file.id, acknowledgeAbuse=False)
    http_obj = thread_http(drive)
    # "ab": what is already on disk is kept and extended; a failure mid-request writes nothing of that chunk,
    # because httplib2 returns a response body whole or raises.
    with part.open("ab") as out:
        writer = PartWriter(out, digest, reporter)
        try:
            done = writer.written
            while done < total:
                last = min(done + chunk_bytes, total) - 1
                response, content = http_obj.request(
                    request.uri, method="GET", headers={"range": f"bytes={done}-{last}"}
                )
                if response.status == 206:
                    first, _, size = _parse_content_range(response.get("content-range", ""))
                    if size != total:
                        raise DriveIntegrityError(
                            f"Drive now serves {size} bytes for {file.title!r} ({file.id}) but listed {total}: the "
                            "file changed during the download; run again to fetch the new revision"
                        )
                    if first != done:
                        raise http.client.HTTPException(f"asked for bytes from {done}, got a range from {first}")
                elif response.status == 200:
                    # The server ignored Range and sent everything: keep that instead of what we had.
                    if len(content) != total:
                        raise DriveIntegrityError(
                            f"Drive sent {len(content)} bytes for {file.title!r} ({file.id}) but listed {total}: "
                            "the file changed during the download; run again to fetch the new revision"
                        )
                    writer.start_over()
                    done = 0
                else:
                    raise HttpError(response, content, uri=request.uri)
                if not content:
                    raise http.client.HTTPException(f"empty body for bytes {done}-{last}")
                writer.append(content)
                done += len(content)
        finally:
            # Whatever happened, the chunk in flight lands first, so the file and its MD5 state agree.
            writer.close()
    return writer.digest


def _parse_content_range(value: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value.strip())
    if not match:
        raise http.client.HTTPException(f"unreadable Content-Range {value!r}")
    first, last, total = (int(group) for group in match.groups())
    return first, last, total
