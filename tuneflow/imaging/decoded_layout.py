"""Where the decoded photos of tuneflow.imaging.decoded_cache lie, without TensorFlow: retention reads the layout too.

    <store root>/<image_size>px-v<decoder version>-tf<TensorFlow version>/<sha256[:2]>/<sha256>.tensor
    <store root>/<image_size>px-v<decoder version>-tf<TensorFlow version>/.staging-<pid>-<token>/
                                                   decoded photos until written whole
"""

from __future__ import annotations

from pathlib import Path

CACHE_SUFFIX = ".tensor"
STAGING_PREFIX = ".staging-"
# A staging folder this old belongs to a pass that was killed (a pass takes minutes, at most hours).
STALE_STAGING_SECONDS = 24 * 3600


def cache_file(store: Path, digest: str) -> Path:
    return store / digest[:2] / f"{digest}{CACHE_SUFFIX}"
