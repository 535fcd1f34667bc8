"""The MD5 of a file on disk: how archives are fingerprinted and how Drive downloads are checked.

Drive lists an MD5 for every binary file, so MD5 (not a stronger hash) is what a download can be compared with;
the archive fingerprint uses the same one, so a run's recorded MD5 matches the one Drive shows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

# Large enough that the per-read overhead vanishes, small enough to stay out of the way of a training process.
HASH_BLOCK_BYTES = 4 * 1024 * 1024


def md5_state_of_file(path: Path) -> Any:
    """A hashlib MD5 object fed with every byte of `path`: a resumed download keeps updating it."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest


def md5_of_file(path: Path) -> str:
    """The file's MD5 as lowercase hex, the form Drive's md5Checksum takes."""
    return md5_state_of_file(path).hexdigest()
