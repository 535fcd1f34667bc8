"""Prepare step: Prefect's view of tuneflow.dataset.prepare: log what the archive held, publish it as tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from tuneflow.config import DataSettings
from tuneflow.dataset.prepare import counts_table, prepare_dataset
from tuneflow.records import PreparedDataset
from tuneflow.tasks.dashboard import ArtifactKeys, best_effort, keys_of_run
from tuneflow.tasks.results import REUSED_ON_RETRY

# A Prefect artifact lives in its database: a whole manifest only when small, else just the files not kept.
MANIFEST_ARTIFACT_ROWS = 1000


def publish_data_artifacts(prepared: PreparedDataset, keys: ArtifactKeys) -> None:
    """Counts per class, and the manifest (whole when small, else every file not kept), as Prefect tables."""
    counts = counts_table(prepared).reset_index()
    best_effort(
        "dataset counts table",
        create_table_artifact,
        key=keys.key("dataset-counts"),
        table=counts.to_dict(orient="records"),
        description=f"{prepared.total:,} images in {len(prepared.classes)} classes ({prepared.layout}, "
        f"{prepared.split_method} split) from {prepared.files_seen:,} files"
        + "".join(
            f"; {photos} photo(s) under both {classes} left out (label conflict)"
            for classes, photos in prepared.label_conflicts.items()
        ),
    )
    table = pd.read_csv(prepared.manifest, keep_default_na=False, dtype=str)
    whole = len(table) <= MANIFEST_ARTIFACT_ROWS
    shown = table if whole else table[table["status"] != "kept"].head(MANIFEST_ARTIFACT_ROWS)
    best_effort(
        "dataset manifest table",
        create_table_artifact,
        key=keys.key("dataset-manifest"),
        table=shown.to_dict(orient="records"),
        description=(
            f"every file in the archive ({len(table):,})"
            if whole
            else f"{len(shown):,} of the {int((table['status'] != 'kept').sum()):,} files not kept "
            f"(of {len(table):,} in the archive)"
        )
        + f"; the full manifest is {prepared.manifest}",
    )


@task(name="prepare-dataset", cache_policy=REUSED_ON_RETRY, persist_result=True)
def prepare(
    archive: Path,
    dest: Path,
    settings: DataSettings,
    seed: int,
    cache_dir: Path | None = None,
    archive_md5: str | None = None,
    keys: ArtifactKeys | None = None,
) -> PreparedDataset:
    """Split the archive's images into checked train/ and val/ folders and record every file in a manifest."""
    prepared = prepare_dataset(archive, dest, settings, seed, cache_dir=cache_dir, archive_md5=archive_md5)
    logger = get_run_logger()
    logger.info(
        "%s images (%s) from %s files; skipped %s; ignored %s",
        f"{prepared.total:,}", prepared.layout, f"{prepared.files_seen:,}", prepared.skipped or "none",
        prepared.ignored or "none",
    )  # fmt: skip
    for note in prepared.notes:
        logger.info(note)
    publish_data_artifacts(prepared, keys_of_run(keys))
    return prepared
