"""Preparing a dataset archive: checked train/ and val/ folders, a manifest of every file, a cache of both.

`prepare_dataset` drives the rest of `tuneflow.dataset` (scan the zip's directory, plan the split, stream each
image straight into place, settle the split exactly) and makes the result appear all at once: it is built under
a hidden name and renamed into place, so a run folder or cache entry is either complete or absent. With a cache
folder, a preparation of the same archive bytes with the same settings is hard-linked instead of redone.
The `prepare` task (tasks/prepare.py) calls it and publishes the summary as Prefect artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd

from tuneflow.atomic_files import staged_folder
from tuneflow.checksums import md5_of_file
from tuneflow.config import DataSettings
from tuneflow.dataset.archive import ArchiveError, Catalog, open_archive, scan_archive
from tuneflow.dataset.selection import (
    apply_given_split,
    check_total_size,
    name_files,
    read_food101_split,
    select_classes,
)
from tuneflow.dataset.build import Built, build_dataset
from tuneflow.dataset.split import MIN_IMAGES_PER_CLASS, SplitError, leave_out_hint
from tuneflow.records import PreparedDataset

MANIFEST_NAME = "manifest.csv"
# The record of a finished preparation, inside its dataset folder: a resumed run finds it and reuses the folder.
PREPARED_RECORD = "prepared.json"
# Bump when the same archive and settings would now prepare differently, so cached datasets are not reused.
PREPARE_VERSION = 3  # 2: split by content, photos under two classes left out; 3: copies settled before the split
STALE_PARTIAL_SECONDS = 24 * 3600  # a build folder this old belongs to a crashed run, not a running one
LAYOUT_NAMES = {
    "food-101": "Food-101 (images/<class>/ + meta/)",
    "split-folders": "already split (train/ + val/ folders)",
    "class-folders": "one folder per class",
}


def prepare_dataset(
    archive: Path,
    dest: Path,
    settings: DataSettings,
    seed: int,
    *,
    cache_dir: Path | None = None,
    archive_md5: str | None = None,
    workers: int | None = None,
) -> PreparedDataset:
    """Prepare dest/train/<class>/ and dest/val/<class>/ from the archive, and write manifest.csv next to dest.

    With a cache_dir, a preparation of the same archive bytes (archive_md5, computed when not given) with the same
    settings is reused instead of redone. workers: processes for reading and checking images (default: all cores).
    """
    archive, dest = Path(archive), Path(dest)
    if (dest / PREPARED_RECORD).is_file():  # dest only ever appears complete: this is a resumed run
        return read_record(dest)
    check_dest_is_free(dest)
    with open_archive(archive) as zip_file:
        infos = zip_file.infolist()
        catalog = select_classes(scan_archive(zip_file, settings), settings.classes, settings.exclude_classes)
        seeded = use_seeded_split(catalog, settings)
        if not seeded and catalog.layout == "food-101":
            catalog = apply_given_split(catalog, read_food101_split(zip_file, catalog))
    catalog = name_files(catalog, per_side=not seeded)
    check_total_size(catalog, settings)
    check_enough_images(catalog, settings, seeded)
    if cache_dir is None:
        return build_in_place(archive, infos, catalog, settings, seed, seeded, dest, workers)
    key = cache_key(archive_md5 or md5_of_file(archive), settings, seed if seeded else None)
    entry = Path(cache_dir) / key
    reused = entry.is_dir()
    if not reused:
        build_into_cache(archive, infos, catalog, settings, seed, seeded, entry, workers)
    return link_from_cache(entry, dest, reused)


def check_dest_is_free(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"{str(dest)!r} already exists and is not an empty folder; prepare into a new run folder"
        )


def use_seeded_split(catalog: Catalog, settings: DataSettings) -> bool:
    """Whether to split by seed (True) or keep the archive's own split (False), per settings.split_method."""
    if settings.split_method == "seeded":
        return True
    if settings.split_method == "archive":
        if not catalog.has_own_split:
            raise ArchiveError(
                "split_method='archive' needs an archive with its own split (train/ + val/ folders, or Food-101's "
                "meta/train.txt and meta/test.txt), but this one is one folder per class; use split_method='auto'"
            )
        return False
    if catalog.layout == "split-folders":
        if settings.per_class_counts is not None:
            raise ArchiveError(
                "the archive is already split into train/ and val/ folders, which split_method='auto' keeps; "
                "train_per_class/val_per_class apply to a seeded split: set split_method='seeded' to re-split it"
            )
        return False
    return True  # class folders, and Food-101 (whose own split is 750/250, not the 800/200 asked for by default)


def check_enough_images(catalog: Catalog, settings: DataSettings, seeded: bool) -> None:
    """Fail before reading anything when a class cannot be split even if every one of its images is fine."""
    per_class = Counter(candidate.label for candidate in catalog.candidates)
    counts = settings.per_class_counts
    needed = sum(counts) if counts and seeded else MIN_IMAGES_PER_CLASS
    for label in catalog.classes:
        if per_class[label] < needed:
            what = (
                f"train_per_class + val_per_class = {needed}"
                if counts and seeded
                else f"at least {needed} to split it into train and val"
            )
            raise SplitError(
                f"class {label!r} has {per_class[label]} image file(s); need {what}. Add photos to {label!r}, "
                f"lower the counts, or leave the class out: {leave_out_hint(label, settings.classes is not None)}"
            )


def build_in_place(archive, infos, catalog, settings, seed, seeded, dest: Path, workers) -> PreparedDataset:
    """Build next to dest and rename into place last, so dest is either complete or absent."""
    work = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        prepared = build(archive, infos, catalog, settings, seed, seeded, work, dest, workers)
        os.replace(work / MANIFEST_NAME, dest.parent / MANIFEST_NAME)
        if dest.exists():
            dest.rmdir()  # checked empty above
        os.rename(work / "dataset", dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return prepared


def build(archive, infos, catalog, settings, seed, seeded, work: Path, final_root: Path, workers) -> PreparedDataset:
    """Write work/dataset/ (with its record) and work/manifest.csv, for renaming to final_root and next to it."""
    root = work / "dataset"
    root.mkdir(parents=True)
    built = build_dataset(archive, infos, catalog, settings, seed, seeded, root, workers)
    built.table.to_csv(work / MANIFEST_NAME, index=False)
    prepared = summarise(built, catalog, settings, seeded, final_root, final_root.parent / MANIFEST_NAME)
    write_record(root, prepared)
    return prepared


def write_record(root: Path, prepared: PreparedDataset) -> None:
    (root / PREPARED_RECORD).write_text(prepared.model_dump_json(indent=2) + "\n")


def read_record(root: Path) -> PreparedDataset:
    """The record of the finished preparation in root, pointing at root wherever the folder now is."""
    prepared = PreparedDataset.model_validate_json((root / PREPARED_RECORD).read_text())
    return prepared.model_copy(update={"root": root, "manifest": root.parent / MANIFEST_NAME})


def summarise(
    built: Built, catalog: Catalog, settings: DataSettings, seeded: bool, root: Path, manifest: Path
) -> PreparedDataset:
    reasons = built.table.groupby("status")["reason"].value_counts()
    skipped = reasons["skipped"].to_dict() if "skipped" in reasons else {}
    ignored = reasons["ignored"].to_dict() if "ignored" in reasons else {}
    notes = [f"layout: {LAYOUT_NAMES[catalog.layout]}" + (f" under {catalog.top}" if catalog.top else "")]
    if settings.exclude_classes:
        notes.append(f"classes left out (exclude_classes): {', '.join(map(repr, settings.exclude_classes))}")
    if not seeded:
        notes.append("kept the archive's own train/val split; val_fraction does not apply")
    notes.extend(uneven_class_notes(built.counts))
    if built.duplicates:
        notes.append(
            f"{built.duplicates} duplicate file(s) dropped: only one copy of each content is kept, so no image is "
            "on both sides of the split"
        )
    for classes, photos in built.label_conflicts.items():
        notes.append(f"label conflicts: {photos} photo(s) filed under both {classes} were left out of both")
    if catalog.name_encoding not in ("utf-8", "cp437"):
        notes.append(f"file names not marked UTF-8 were read as {catalog.name_encoding}")
    return PreparedDataset(
        root=root,
        classes=sorted(built.counts["train"]),
        counts=built.counts,
        layout=catalog.layout,
        split_method="seeded" if seeded else "archive",
        manifest=manifest,
        files_seen=len(built.table),
        skipped={reason: int(count) for reason, count in sorted(skipped.items())},
        ignored={reason: int(count) for reason, count in sorted(ignored.items())},
        duplicates=built.duplicates,
        label_conflicts=built.label_conflicts,
        converted=built.converted,
        notes=notes,
    )


def uneven_class_notes(counts: dict[str, dict[str, int]]) -> list[str]:
    """Name the classes whose size differs from the most common one: each is split on its own, exactly."""
    totals = {label: counts["train"][label] + counts["val"][label] for label in counts["train"]}
    if len(set(totals.values())) <= 1:
        return []
    usual, _ = Counter(totals.values()).most_common(1)[0]
    odd = sorted((label for label, total in totals.items() if total != usual), key=lambda label: totals[label])
    listed = ", ".join(
        f"{label!r} {totals[label]:,} ({counts['train'][label]:,}/{counts['val'][label]:,})" for label in odd[:10]
    )
    more = f" and {len(odd) - 10} more" if len(odd) > 10 else ""
    return [f"uneven classes: most have {usual:,} usable images; {listed}{more} (train/val)"]


def cache_key(archive_md5: str, settings: DataSettings, seed: int | None) -> str:
    """Name a preparation by everything that decides its output: code version, archive bytes, settings, seed."""
    listed = {name: sorted(getattr(settings, name) or []) for name in ("classes", "exclude_classes")}
    chosen = settings.model_dump() | listed  # listing order does not matter
    recipe = json.dumps(
        {"version": PREPARE_VERSION, "archive_md5": archive_md5, "settings": chosen, "seed": seed}, sort_keys=True
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:24]


def build_into_cache(archive, infos, catalog, settings, seed, seeded, entry: Path, workers) -> None:
    """Build in a private folder, then publish it with one rename: a crash never leaves a half entry to reuse."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(entry.parent)
    work = entry.parent / f".partial-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        build(archive, infos, catalog, settings, seed, seeded, work, entry / "dataset", workers)
        try:
            os.rename(work, entry)
        except OSError:
            if not entry.is_dir():
                raise  # otherwise another run published the same preparation first: use theirs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_stale_partials(cache_dir: Path) -> None:
    cutoff = time.time() - STALE_PARTIAL_SECONDS
    for partial in cache_dir.glob(".partial-*"):
        if partial.stat().st_mtime < cutoff:
            shutil.rmtree(partial, ignore_errors=True)


def link_from_cache(entry: Path, dest: Path, reused: bool) -> PreparedDataset:
    """Give the run its own copy of a cached preparation: hard links, falling back to copies.

    Hard links cost no disk space or time and leave the run's folder independent of the cache (deleting either
    keeps the other's files). The files are only ever read; anything that rewrote one in place would change it in
    both places, which is why training must not (and does not) write into the dataset folder, and why the run's
    own record is written fresh rather than linked.
    """
    with staged_folder(dest) as work:  # over an empty dest (checked by the caller): rename(2) replaces it
        link_tree(entry / "dataset", work, leave_out=PREPARED_RECORD)
        prepared = read_record(entry / "dataset").model_copy(
            update={"root": dest, "manifest": dest.parent / MANIFEST_NAME, "reused_from": entry if reused else None,
                    "cache_entry": entry}
        )
        write_record(work, prepared)
        shutil.copyfile(entry / MANIFEST_NAME, dest.parent / MANIFEST_NAME)
    return prepared


def link_tree(source: Path, target: Path, leave_out: str) -> None:
    for folder, _, files in os.walk(source):
        into = target / Path(folder).relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in files:
            if folder == str(source) and name == leave_out:
                continue
            try:
                os.link(Path(folder) / name, into / name)
            except OSError:  # another filesystem, or one without hard links
                shutil.copy2(Path(folder) / name, into / name)


def counts_table(prepared: PreparedDataset) -> pd.DataFrame:
    """Images per class and side, with totals: the table the report and the artifact show."""
    table = pd.DataFrame(prepared.counts).reindex(prepared.classes).fillna(0).astype(int)
    table["total"] = table.sum(axis=1)
    table.loc["all classes"] = table.sum()
    table.index.name = "class"
    return table
