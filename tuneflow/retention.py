"""What stays on disk as runs pile up: the newest runs keep everything, older ones their results only.

Weekly retraining on Food-101 would otherwise add about 5 GB of photos and, while training, up to 11 GB of decoded
pixels per run. Heavy files are what only training or a resume needs:

    runs/<id>/dataset/       the prepared photos (hard links into the cached preparation)
    runs/<id>/cache/         decoded photos (training deletes them itself when it ends)
    runs/<id>/checkpoints/   epoch checkpoints, for resuming
    runs/<id>/workers/       the other machines' copies when training across machines

A run's model, reports, predictions, metrics, manifest, history and config are small and always kept (its model
version in models/ too). `prune_heavy_files` keeps the heavy files of the newest `keep` finished runs and of
every unfinished one (it may be resumed), removes the rest's, and then the cached preparations and Drive downloads
that no run with a dataset still uses (the newest download of each Drive file stays: the next run wants it).
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
from tuneflow.runs import RUN_ARCHIVE_FILE, RUNS_FOLDER

PREPARED_CACHE = Path("cache") / "prepared"
DRIVE_CACHE = Path("cache") / "drive"
HEAVY_PARTS = ("dataset", "cache", "checkpoints", "workers")
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
    removed: list[Removed] = []
    for run_dir in finished[: max(0, len(finished) - keep)]:
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
    removed += prune_unused_caches(data_root, exclude=pruned if dry_run else set(), dry_run=dry_run)
    return removed


def prune_unused_caches(data_root: Path, exclude: set[Path], dry_run: bool) -> list[Removed]:
    """Cached preparations no run's dataset links to, Drive downloads no such run trained on (but the newest)."""
    in_use_entries: set[Path] = set()
    in_use_archives: set[Path] = set()
    for run_dir in run_folders(data_root):
        if run_dir in exclude or not (run_dir / "dataset").is_dir():
            continue
        record = run_dir / "dataset" / PREPARED_RECORD
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
    return removed
