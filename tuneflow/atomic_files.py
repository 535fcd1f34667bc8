"""Write a file or a folder so that readers see either the old content or the complete new one, never half of it.

Every file a later step or a resumed run trusts (state, records, metrics, manifests, models, checkpoints) is
written this way: the content goes to a hidden temporary name in the same folder (same filesystem, so the rename
is atomic), then os.replace puts it in place. A crash leaves the old file and, at worst, a stray `.tmp-*`
beside it. A folder (a model version, an export, a run's dataset) is filled under a hidden name the same way and
renamed into place last.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside `path`, unique per call: two writers never share a temporary file. It ends with
    path's own name, so a writer that insists on a suffix (Keras: `.keras`, `.weights.h5`) accepts it."""
    return path.with_name(f".tmp-{secrets.token_hex(4)}.{path.name}")


@contextmanager
def atomic_destination(path: Path) -> Iterator[Path]:
    """A temporary path for any writer (Keras, h5py, zipfile, os.symlink) to create; it replaces `path` when the
    block ends without an error and is removed when the block raises."""
    temporary = temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A new hidden folder beside `target` to fill; renamed to `target` when the block ends without an error,
    deleted with its contents when the block raises. `target` must not exist, or be an empty folder."""
    staging = temporary_sibling(target)
    staging.mkdir(parents=True)
    try:
        yield staging
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    with atomic_destination(path) as temporary:
        temporary.write_bytes(data)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: Path, value: object) -> Path:
    """Indented JSON with a final newline, as every record of ours is written."""
    return write_text_atomically(path, json.dumps(value, indent=2) + "\n")
