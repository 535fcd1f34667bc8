"""Stream archive members straight into the dataset folder, checking each image, on every core.

Each member is read with one positioned read of its compressed bytes, inflated with a hard cap at the size the
central directory declares, checked against its CRC-32, hashed, inspected and written to the path the caller
built: never a path taken from the archive. One file's bytes are in memory at a time per worker; the archive as
a whole never is.

The calling process works through batches too; its helpers are plain `python -m tuneflow.dataset.extract`
processes fed batches over a pipe. A multiprocessing pool would re-import the caller's `__main__` in every worker
(under a Prefect flow that is TensorFlow, seconds per worker), and forking a process that runs Prefect's threads
is unsafe.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import selectors
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

from tuneflow.child_process import child_environment, python_module_command
from tuneflow.dataset.images import inspect_image

LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then name and extra-field lengths at offset 26
LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
# Below this many files one process finishes before extra workers have started (about 0.1 s each).
PARALLEL_MIN_FILES = 1000
MAX_WORKERS = 8  # past this the disk, not the CPU, is the limit
BATCHES_PER_WORKER = 8  # small enough batches that a worker slowed by other load does not hold up the end


class Job(NamedTuple):
    """One member to read: where its bytes are and where they go ('train/pizza/123', suffix added on write)."""

    index: int
    offset: int  # of its local header
    method: int
    packed_size: int
    size: int
    crc: int
    raw_name: bytes  # as stored, to check the local header describes the same file as the directory
    target: str | None  # None: only hash it (a suspected duplicate of another file)

    @classmethod
    def for_member(cls, info: zipfile.ZipInfo, index: int, target: str | None) -> Job:
        name = info.orig_filename
        # ASCII first: the cp437 codec is pure Python and costs seconds over 100k names.
        encoding = "ascii" if name.isascii() else "utf-8" if info.flag_bits & 0x800 else "cp437"
        raw_name = name.encode(encoding)
        return cls(
            index, info.header_offset, info.compress_type, info.compress_size, info.file_size, info.CRC, raw_name,
            target,
        )


class Outcome(NamedTuple):
    """What happened to one member: its hash and size in pixels, and the file written or why it was skipped."""

    index: int
    sha256: str | None
    width: int | None
    height: int | None
    file: str | None  # written file, relative to the dataset root, e.g. "train/pizza/123.jpg"
    reason: str | None  # skip reason; None when written (or, for a hash-only job, read)
    detail: str


class MemberReader:
    """Reads members by their directory entry, without zipfile's per-open overhead."""

    def __init__(self, archive: Path):
        self.archive = archive
        self.fd = os.open(archive, os.O_RDONLY | os.O_CLOEXEC)
        self.zip: zipfile.ZipFile | None = None  # opened only for bzip2/LZMA members

    def close(self) -> None:
        os.close(self.fd)
        if self.zip is not None:
            self.zip.close()

    def read(self, job: Job) -> bytes:
        head = os.pread(self.fd, LOCAL_HEADER.size + len(job.raw_name), job.offset)
        if len(head) < LOCAL_HEADER.size:
            raise zipfile.BadZipFile("the archive ends inside this file's header (truncated archive)")
        signature, name_length, extra_length = LOCAL_HEADER.unpack_from(head)
        if signature != LOCAL_HEADER_SIGNATURE or head[LOCAL_HEADER.size :] != job.raw_name:
            # Also how overlapping-entry zip bombs show up: many directory entries pointing at one header.
            raise zipfile.BadZipFile("the local header does not describe this file (damaged or crafted archive)")
        start = job.offset + LOCAL_HEADER.size + name_length + extra_length
        if job.method == zipfile.ZIP_STORED:
            data = os.pread(self.fd, job.size, start)
        elif job.method == zipfile.ZIP_DEFLATED:
            packed = os.pread(self.fd, job.packed_size, start)
            # max_length caps the output at one byte past the declared size, however the data is crafted.
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(packed, job.size + 1)
        else:
            data = self.read_with_zipfile(job)
        if len(data) != job.size:
            raise zipfile.BadZipFile(f"holds {len(data):,} bytes, not the {job.size:,} its directory entry says")
        if zlib.crc32(data) != job.crc:
            raise zipfile.BadZipFile("CRC-32 mismatch: the file is damaged inside the archive")
        return data

    def read_with_zipfile(self, job: Job) -> bytes:
        if self.zip is None:
            self.zip = zipfile.ZipFile(self.archive)
        with self.zip.open(self.zip.infolist()[job.index]) as member:
            return member.read(job.size + 1)


def write_new_file(path: str, data: bytes) -> None:
    """Create a file that must not exist yet (O_EXCL also refuses to follow a planted symlink)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def process_jobs(archive: Path, root: Path, jobs: list[Job], min_side: int) -> list[Outcome]:
    """Read, hash, check and write each job's member; every failure becomes a skip with its reason."""
    reader = MemberReader(archive)
    outcomes = []
    try:
        for job in jobs:
            try:
                data = reader.read(job)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as error:
                outcomes.append(Outcome(job.index, None, None, None, None, "read-error", str(error)))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if job.target is None:
                outcomes.append(Outcome(job.index, digest, None, None, None, None, ""))
                continue
            seen = inspect_image(data, min_side)
            if seen.reason is not None:
                outcomes.append(Outcome(job.index, digest, seen.width, seen.height, None, seen.reason, seen.detail))
                continue
            file = job.target + seen.suffix
            write_new_file(os.path.join(root, file), data if seen.converted is None else seen.converted)
            outcomes.append(Outcome(job.index, digest, seen.width, seen.height, file, None, seen.detail))
    finally:
        reader.close()
    return outcomes


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def extract_jobs(
    archive: Path, root: Path, jobs: list[Job], min_side: int, workers: int | None = None
) -> list[Outcome]:
    """Run the jobs on `workers` cores (default: all), when there are enough of them to pay for starting helpers."""
    workers = min(workers or usable_cores(), MAX_WORKERS)
    if workers < 2 or len(jobs) < PARALLEL_MIN_FILES:
        return process_jobs(archive, root, jobs, min_side)
    jobs = sorted(jobs, key=lambda job: job.offset)  # each batch reads one stretch of the archive
    size = -(-len(jobs) // (workers * BATCHES_PER_WORKER))
    batches = [jobs[start : start + size] for start in range(0, len(jobs), size)]
    return run_in_workers(archive, root, batches, min_side, helpers=workers - 1)


def run_in_workers(
    archive: Path, root: Path, batches: list[list[Job]], min_side: int, helpers: int, here: bool = True
) -> list[Outcome]:
    """Work through the batches in `helpers` worker processes and (`here`) this one, each taking the next as it ends.

    This process starts at once, while the helpers are still starting (about 0.3 s each).
    """
    env = child_environment()
    command = python_module_command("tuneflow.dataset.extract")
    pending = iter(batches)
    taking = threading.Lock()

    def take() -> list[Job] | None:
        with taking:
            return next(pending, None)

    local: list[Outcome] = []
    failure: list[BaseException] = []

    def work_here() -> None:
        try:
            while (batch := take()) is not None:
                local.extend(process_jobs(archive, root, batch, min_side))
        except BaseException as error:  # re-raised in the calling thread
            failure.append(error)

    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) for _ in range(helpers)
    ]
    thread = threading.Thread(target=work_here if here else lambda: None, name="extract-here")
    thread.start()
    outcomes: list[Outcome] = []
    selector = selectors.DefaultSelector()
    finished = False
    try:
        for process in processes:
            pickle.dump((archive, root, min_side), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            batch = take()
            feed(process, batch)
            if batch is not None:
                selector.register(process.stdout, selectors.EVENT_READ, process)
        while selector.get_map():
            for key, _ in selector.select():
                process = key.data
                try:
                    outcomes.extend(map(Outcome._make, pickle.load(process.stdout)))
                except EOFError:
                    raise RuntimeError(
                        f"dataset worker {process.pid} died (exit status {process.wait()}); its error is in the "
                        "log above"
                    ) from None
                batch = take()
                feed(process, batch)
                if batch is None:
                    selector.unregister(process.stdout)
        finished = True
    finally:
        if not finished:
            with taking:
                for _ in pending:  # let this process's thread run out of batches
                    pass
        thread.join()
        selector.close()
        for process in processes:
            if not finished:
                process.kill()  # after a failure nobody reads their results: stop them now
            process.wait()
            process.stdout.close()
            if not process.stdin.closed:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
    if failure:
        raise failure[0]
    return outcomes + local


def feed(process: subprocess.Popen, batch: list[Job] | None) -> None:
    if batch is None:
        process.stdin.close()
    else:
        # Plain tuples: pickling 100k named tuples or dataclasses costs seconds, plain tuples milliseconds.
        pickle.dump([tuple(job) for job in batch], process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.flush()


def serve() -> None:
    """Worker loop: read (archive, root, min_side), then batches of jobs until stdin closes; answer each."""
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr instead of corrupting the results pipe
    requests = sys.stdin.buffer
    archive, root, min_side = pickle.load(requests)
    while True:
        try:
            jobs = [Job._make(job) for job in pickle.load(requests)]
        except EOFError:
            break
        outcomes = process_jobs(archive, root, jobs, min_side)
        pickle.dump([tuple(outcome) for outcome in outcomes], results, protocol=pickle.HIGHEST_PROTOCOL)
        results.flush()


if __name__ == "__main__":
    # Serve from the module under its import name, so results pickle as tuneflow.dataset.extract.Outcome (which
    # the parent can load) rather than __main__.Outcome.
    from tuneflow.dataset import extract

    extract.serve()
