"""Prune step: the end of each run applies the retention setting (tuneflow.runs.retention) and says what it freed."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tuneflow.formatting import byte_size
from tuneflow.runs.retention import Removed, prune_heavy_files


@task(name="prune-old-runs", cache_policy=NO_CACHE)
def prune_runs(data_root: Path, keep: int) -> list[Removed]:
    """Keep the heavy files of the newest `keep` finished runs; log what the older ones gave back."""
    removed = prune_heavy_files(data_root, keep)
    logger = get_run_logger()
    if removed:
        freed = byte_size(sum(item.bytes for item in removed))
        logger.info("retention (storage.keep_runs=%d): freed %s: %s", keep, freed,
                    ", ".join(str(item.path.relative_to(data_root)) for item in removed))
    else:
        logger.info("retention (storage.keep_runs=%d): nothing to remove", keep)
    return removed
