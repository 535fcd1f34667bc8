"""What stays on disk as runs pile up: the newest runs keep everything, older ones their results only.

Weekly retraining on Food-101 would otherwise add about 5 GB of photos and, while training, up to 15 GB of decoded
pixels per run. Heavy files are what only training or a resume needs:

    runs/<id>/dataset/       the prepared photos (hard links into the cached preparation)
    runs/<id>/cache/         decoded photos, when storage.keep_decoded_photos is off (training deletes them itself
                             when it ends)
    runs/<id>/checkpoints/   epoch checkpoints, for resuming
    runs/<id>/workers/       the other machines' copies when training across machines

A run's model, reports, predictions, metrics, manifest, history and config are small and always kept (its model
version in models/ too). `prune_heavy_files` keeps the heavy files of the newest `keep` finished runs and of
every unfinished one (it may be resumed), removes the rest's, and then the cached preparations, Drive downloads
and decoded photos that no run with a dataset still uses (the newest download of each Drive file stays: the next
run wants it). Checkpoints exist only for resuming, which a finished run never does: every finished run loses
them, the newest too (about 570 MB at 224 px), so a run that just finished gives them back at its prune step;
an unfinished (failed) run keeps them to resume from.

Decoded photos (data_root/cache/decoded/, tuneflow.imaging.decoded_cache) are named by their content, not by run, so
which runs use one is told by time: training sets a photo's modification time whenever it uses it, so a photo
untouched since the oldest run that still has its dataset started is used by none of them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from tuneflow.dataset.prepare import PREPARED_RECORD
from tuneflow.imaging.decoded_layout import CACHE_SUFFIX, STAGING_PREFIX, STALE_STAGING_SECONDS
from tuneflow.runs.folders import RUN_ARCHIVE_FILE
from tuneflow.storage import (
    DECODED_CACHE,
    DRIVE_CACHE,
    PREPARED_CACHE,
    RUN_CACHE_FOLDER,
    RUN_CHECKPOINTS_FOLDER,
    RUN_DATASET_FOLDER,
    RUN_WORKERS_FOLDER,
    RUNS_FOLDER,
)

HEAVY_PARTS = (RUN_DATASET_FOLDER, RUN_CACHE_FOLDER, RUN_CHECKPOINTS_FOLDER, RUN_WORKERS_FOLDER)
FINISHED_MARKER = "report.md"  # written last by the report step
PRUNED_RECORD = "pruned.json"
FRESH_SECONDS = 3600  # a cached preparation this new may belong to a run still starting

class RunEntry(BaseModel):
    """One run folder, as `tuneflow runs` lists it."""

    run_id: str
    path: Path
    finished: bool
    pruned: bool
    size_bytes: int
    heavy_bytes: int
    accuracy: float | None
    promoted: bool | None


class Removed(BaseModel):
    """What a prune removed (or would remove, in a dry run)."""

    path: Path
    bytes: int
    # When only part of the folder goes (decoded photos no kept run used): what of it.
    part: str | None = None


def folder_size(path: Path) -> int:
    """Bytes the folder's files take, each hard-linked file counted once (a dataset linked from the cache and the
    cache entry itself are one copy on disk)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def run_folders(data_root: Path) -> list[Path]:
    """Run folders, oldest first (run ids start with their UTC start time)."""
    runs = Path(data_root) / RUNS_FOLDER
    if not runs.is_dir():
        return []
    return sorted(path for path in runs.iterdir() if path.is_dir() and not path.name.startswith("."))


def describe_run(run_dir: Path) -> RunEntry:
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    heavy = sum(folder_size(run_dir / part) for part in HEAVY_PARTS if (run_dir / part).exists())
    return RunEntry(
        run_id=run_dir.name,
        path=run_dir,
        finished=(run_dir / FINISHED_MARKER).is_file(),
        pruned=(run_dir / PRUNED_RECORD).is_file(),
        size_bytes=folder_size(run_dir),
        heavy_bytes=heavy,
        accuracy=metrics.get("accuracy"),
        promoted=(metrics.get("promotion") or {}).get("promoted"),
    )


def list_runs(data_root: Path) -> list[RunEntry]:
    return [describe_run(run_dir) for run_dir in run_folders(data_root)]


def prune_heavy_files(data_root: Path, keep: int, dry_run: bool = False) -> list[Removed]:
    """Remove the heavy files of every finished run but the newest `keep`, then unused caches; return what went."""
    if keep < 0:
        raise ValueError(f"keep must be 0 or more (runs whose heavy files stay), not {keep}")
    data_root = Path(data_root)
    finished = [run_dir for run_dir in run_folders(data_root) if (run_dir / FINISHED_MARKER).is_file()]
    older, newest = finished[: max(0, len(finished) - keep)], finished[max(0, len(finished) - keep):]
    removed: list[Removed] = []
    for run_dir in older:
        parts = [run_dir / part for part in HEAVY_PARTS if (run_dir / part).exists()]
        if not parts:
            continue
        removed += [Removed(path=part, bytes=folder_size(part)) for part in parts]
        if dry_run:
            continue
        for part in parts:
            shutil.rmtree(part)
        record = {"pruned_at": datetime.now(timezone.utc).isoformat(), "removed": [part.name for part in parts]}
        (run_dir / PRUNED_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    pruned = {item.path.parent for item in removed}
    for run_dir in newest:
        removed += remove_checkpoints(run_dir, dry_run)
    removed += prune_unused_caches(data_root, exclude=pruned if dry_run else set(), dry_run=dry_run)
    return removed


def remove_checkpoints(run_dir: Path, dry_run: bool) -> list[Removed]:
    """A finished run's checkpoints, its own and those of the other machines it trained on."""
    folders = [run_dir / RUN_CHECKPOINTS_FOLDER,
               *sorted((run_dir / RUN_WORKERS_FOLDER).glob(f"*/{RUN_CHECKPOINTS_FOLDER}"))]
    removed = [Removed(path=folder, bytes=folder_size(folder)) for folder in folders if folder.is_dir()]
    if not dry_run:
        for item in removed:
            shutil.rmtree(item.path)
    return removed


def prune_unused_caches(data_root: Path, exclude: set[Path], dry_run: bool) -> list[Removed]:
    """Cached preparations no run's dataset links to, Drive downloads no such run trained on (but the newest),
    decoded photos none of them used."""
    in_use_entries: set[Path] = set()
    in_use_archives: set[Path] = set()
    runs_with_dataset = [run_dir for run_dir in run_folders(data_root)
                         if run_dir not in exclude and (run_dir / RUN_DATASET_FOLDER).is_dir()]
    for run_dir in runs_with_dataset:
        record = run_dir / RUN_DATASET_FOLDER / PREPARED_RECORD
        if record.is_file() and (entry := json.loads(record.read_text()).get("cache_entry")):
            in_use_entries.add(Path(entry).resolve())
        archive = run_dir / RUN_ARCHIVE_FILE
        if archive.is_file():
            in_use_archives.add(Path(json.loads(archive.read_text())["path"]).resolve().parent)
    removed: list[Removed] = []
    prepared = data_root / PREPARED_CACHE
    if prepared.is_dir():
        for entry in sorted(prepared.iterdir()):
            # A fresh entry may be one a running run has just made and not linked yet: leave it for next time.
            fresh = time.time() - entry.stat().st_mtime < FRESH_SECONDS
            if entry.is_dir() and not entry.name.startswith(".") and not fresh and entry.resolve() not in in_use_entries:
                removed.append(Removed(path=entry, bytes=folder_size(entry)))
    drive = data_root / DRIVE_CACHE
    if drive.is_dir():
        for file_folder in sorted(path for path in drive.iterdir() if path.is_dir()):
            downloads = sorted((path for path in file_folder.iterdir() if path.is_dir()), key=lambda p: p.stat().st_mtime)
            for download in downloads[:-1]:  # the newest download of each file stays
                if download.resolve() not in in_use_archives:
                    removed.append(Removed(path=download, bytes=folder_size(download)))
    if not dry_run:
        for item in removed:
            shutil.rmtree(item.path)
    used_since = min((run_started(run_dir) for run_dir in runs_with_dataset), default=time.time() - FRESH_SECONDS)
    return removed + prune_decoded_photos(data_root / DECODED_CACHE, used_since, dry_run)


def run_started(run_dir: Path) -> float:
    """When a run started, from its id (UTC start time first); the folder's time for a folder named otherwise."""
    try:
        return datetime.strptime(run_dir.name[:15], "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return run_dir.stat().st_mtime


def prune_decoded_photos(decoded: Path, used_since: float, dry_run: bool) -> list[Removed]:
    """Decoded photos last used before `used_since`, one Removed per store (image size and decoder) they were in,
    the store itself when nothing is left in it; staging folders of passes killed long ago."""
    if not decoded.is_dir():
        return []
    removed: list[Removed] = []
    for store in sorted(path for path in decoded.iterdir() if path.is_dir()):
        unused = []
        kept = 0
        photos = (file for folder in store.iterdir() if folder.is_dir() and not folder.name.startswith(STAGING_PREFIX)
                  for file in folder.glob(f"*{CACHE_SUFFIX}"))
        for file in photos:
            info = file.stat()
            if info.st_mtime < used_since:
                unused.append((file, info.st_size))
            else:
                kept += 1
        stale = [staging for staging in store.glob(f"{STAGING_PREFIX}*")
                 if time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS]
        if not unused and not stale:
            continue
        freed = sum(size for _, size in unused) + sum(folder_size(staging) for staging in stale)
        removed.append(Removed(path=store, bytes=freed, part=f"{len(unused)} decoded photo(s) no kept run used, "
                               f"{len(stale)} stale staging folder(s); {kept} photo(s) stay" if kept else None))
        if dry_run:
            continue
        for file, _ in unused:
            file.unlink(missing_ok=True)
        for staging in stale:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in store.iterdir():
            if folder.is_dir() and not folder.name.startswith(STAGING_PREFIX) and not any(folder.iterdir()):
                folder.rmdir()
        if not kept and not any(store.iterdir()):
            store.rmdir()
    return removed
