"""Appending a download's bytes to its .part file while a helper thread hashes them."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

BUFFER_BYTES = 1024 * 1024  # fits in the CPU's cache: received, written and hashed while still there
BUFFERS = 4  # the download's memory: BUFFERS x BUFFER_BYTES, whatever the file's size


class PartWriter:
    """Receives into a few reusable buffers, appends each to the .part file, and hashes it on a helper thread.

    The calling thread receives a buffer and writes it to the file, as curl does; the helper feeds it to the MD5
    (as costly per byte as receiving and writing together) and gives it back. All three release the GIL, so they
    run on two cores at once, and no byte lands in fresh memory the kernel must first zero (httplib2's whole-body
    reads did). `written` counts the bytes on disk and hashed, once `wait` has returned: the file and its MD5 state
    always agree, also when a write fails (the file is cut back to the last byte hashed).
    """

    def __init__(self, out: Any, digest: Any):
        self.out, self.digest = out, digest
        self.written = out.tell()  # bytes in the file; all of them hashed once `wait` returns
        self._free: queue.Queue[memoryview] = queue.Queue()
        for _ in range(BUFFERS):
            self._free.put(memoryview(bytearray(BUFFER_BYTES)))
        self._to_hash: queue.Queue[tuple[memoryview, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._hash_in_turn, name="drive-part-hasher", daemon=True)
        self._thread.start()

    def _hash_in_turn(self) -> None:
        while (item := self._to_hash.get()) is not None:
            buffer, length = item
            try:
                self.digest.update(buffer[:length])
            finally:
                self._free.put(buffer)

    def fill(self, read_into: Callable[[memoryview], int]) -> int:
        """Let `read_into` fill a free buffer (it returns how many bytes it put there); append and hash those."""
        buffer = self._free.get()
        try:
            length = read_into(buffer)
        except BaseException:
            self._free.put(buffer)
            raise
        if not length:
            self._free.put(buffer)
            return 0
        try:
            data = buffer[:length]
            while data:
                data = data[self.out.write(data) :]  # a raw file may take fewer bytes than offered
        except BaseException:
            # A full disk: what this buffer left in the file is not hashed, so it goes.
            self._free.put(buffer)
            self.wait()
            os.ftruncate(self.out.fileno(), self.written)
            raise
        self.written += length
        self._to_hash.put((buffer, length))
        return length

    def wait(self) -> None:
        """Block until every byte written is hashed too."""
        # Every buffer back in the free list means nothing is queued or being hashed.
        taken = [self._free.get() for _ in range(BUFFERS)]
        for buffer in taken:
            self._free.put(buffer)

    def start_over(self) -> None:
        self.wait()
        self.out.seek(0)
        self.out.truncate()
        self.digest, self.written = hashlib.md5(), 0

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._to_hash.put(None)
            self._thread.join()
