"""Write a file so that readers see either the old content or the complete new one, never half of it.

Every file a later step or a resumed run trusts (state, records, metrics, manifests) is written this way: the
content goes to a hidden temporary name in the same folder (same filesystem, so the rename is atomic), then
os.replace puts it in place. A crash leaves the old file and, at worst, a stray `.NAME.*.tmp`.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside `path`, unique per call: two writers never share a temporary file."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    temporary = temporary_sibling(path)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: Path, value: object) -> Path:
    """Indented JSON with a final newline, as every record of ours is written."""
    return write_text_atomically(path, json.dumps(value, indent=2) + "\n")
