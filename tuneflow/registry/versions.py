"""The model registry under <data_root>/models/: one folder per trained model and `current`, the one in use.

    models/<version>/model.keras, classes.json    the model, never changed once stored: a hard link to the run's
                                                  own files (one copy on disk), a copy only across filesystems
    models/<version>/version.json                 where it came from: run, accuracy, archive (Drive file, revision, MD5)
    models/<version>/training_photos.csv          the SHA-256 and class of every photo it trained on
    models/current -> <version>                   the model `tuneflow predict current` and serving use
    models/.promotion.lock                        held while a run compares itself with `current` and switches it

A version folder appears complete or not at all: it is written under a hidden staging name, flushed to disk and
renamed into place. `current` is a relative symlink replaced with rename(2) (os.replace of a freshly made
symlink), which POSIX makes atomic: a reader opening models/current/model.keras gets the old model or the new
one, never a mix and never nothing. A symlink rather than a pointer file, because every tool can then open
models/current/model.keras without knowing about tuneflow. (Windows would need a pointer file: symlinks there
need extra privileges. Our workers run Linux.)

The training manifest travels with the version, not with the run folder (which a user may delete to free space):
it is what lets the next run grade this model only on photos it never saw.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tuneflow.atomic_files import atomic_destination, staged_folder
from tuneflow.storage import MODELS_FOLDER
from tuneflow.training.model import CLASSES_FILE, MODEL_FILE

CURRENT_POINTER = "current"
VERSION_FILE = "version.json"
TRAINING_PHOTOS_FILE = "training_photos.csv"
TRAINING_PHOTOS_COLUMNS = ["sha256", "class", "file"]
PROMOTION_LOCK_FILE = ".promotion.lock"
# How often a run waiting for another run's promotion says so.
LOCK_NOTICE_SECONDS = 30


def models_dir(data_root: Path) -> Path:
    return Path(data_root) / MODELS_FOLDER


def current_version(data_root: Path) -> str | None:
    """The version `current` points at, or None before the first promotion."""
    pointer = models_dir(data_root) / CURRENT_POINTER
    if not pointer.is_symlink():
        return None
    target = models_dir(data_root) / os.readlink(pointer)
    if not (target / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"{pointer} points at {os.readlink(pointer)!r}, which holds no {MODEL_FILE}; point it at a complete "
            f"version with `ln -sfn VERSION {pointer}` (versions: {list_versions(data_root)})"
        )
    return target.name


def list_versions(data_root: Path) -> list[str]:
    """Complete versions, oldest first (versions are run ids, which sort by start time)."""
    folder = models_dir(data_root)
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and (p / MODEL_FILE).is_file()
    )


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (before a rename that makes them visible)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def link_or_copy(source: Path, target: Path, notify: Callable[[str], None]) -> None:
    """A hard link to source (no second copy on disk: 95 MB per ResNet50 version), or a copy where source lies on
    another filesystem, which a hard link cannot reach; said through notify, since that copy takes disk space.

    Safe because nothing writes into a model file once saved: a run writing its model again (a resumed run)
    replaces the file by a rename, which leaves the version's link to the old bytes alone.
    """
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        notify(f"{source} is on another filesystem than {target.parent}: copied it ({source.stat().st_size / 1e6:.0f} "
               "MB more on disk) instead of hard-linking it; keep runs/ and models/ under one data_root to avoid it")
        shutil.copy2(source, target)


def store_version(
    model_dir: Path, data_root: Path, version: str, details: dict, training_photos: pd.DataFrame | None = None,
    notify: Callable[[str], None] = print,
) -> Path:
    """Hard-link model.keras and classes.json into models/<version>/ (copy them across filesystems), which appears
    only once complete.

    training_photos (columns TRAINING_PHOTOS_COLUMNS), when given, is stored with it as training_photos.csv.
    """
    folder = models_dir(data_root)
    final = folder / version
    if final.exists():
        raise FileExistsError(f"model version {str(final)!r} already exists; versions are never overwritten")
    with staged_folder(final) as staging:
        for name in (MODEL_FILE, CLASSES_FILE):
            link_or_copy(Path(model_dir) / name, staging / name, notify)
        record = {"version": version, "stored_at": datetime.now(timezone.utc).isoformat(), **details}
        (staging / VERSION_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        written = [MODEL_FILE, CLASSES_FILE, VERSION_FILE]
        if training_photos is not None:
            training_photos[TRAINING_PHOTOS_COLUMNS].to_csv(staging / TRAINING_PHOTOS_FILE, index=False)
            written.append(TRAINING_PHOTOS_FILE)
        # Flushed before the rename, so after a power cut the version is either absent or whole.
        for name in written:
            fsync_path(staging / name)
    fsync_path(folder)
    return final


def point_current_at(data_root: Path, version: str) -> None:
    """Switch models/current to a stored version in one atomic rename."""
    folder = models_dir(data_root)
    if not (folder / version / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no complete model version {version!r} in {folder}; versions: {list_versions(data_root)}")
    with atomic_destination(folder / CURRENT_POINTER) as temporary:
        os.symlink(version, temporary)  # relative, so the models folder still works when moved or mounted elsewhere
    fsync_path(folder)


def read_version_record(data_root: Path, version: str) -> dict:
    """version.json of a stored version ({} for a folder without one)."""
    path = models_dir(data_root) / version / VERSION_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def read_training_photos(data_root: Path, version: str) -> set[str] | None:
    """The SHA-256 of every photo a version trained on, or None for a version stored before manifests were kept."""
    path = models_dir(data_root) / version / TRAINING_PHOTOS_FILE
    if not path.is_file():
        return None
    return set(pd.read_csv(path, usecols=["sha256"], dtype=str)["sha256"])


def version_trained_on(data_root: Path, drive_file_id: str, drive_revision: str) -> str | None:
    """The newest stored version trained on this revision of this Drive file, if any."""
    for version in reversed(list_versions(data_root)):
        archive = read_version_record(data_root, version).get("archive") or {}
        if (archive.get("drive_file_id"), archive.get("drive_revision")) == (drive_file_id, drive_revision):
            return version
    return None


@contextmanager
def promotion_lock(data_root: Path, holder: str, notify: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the registry's promotion lock: one run at a time reads `current`, compares and switches it.

    An flock on models/.promotion.lock: released by the kernel when the holder exits, even if it is killed, so a
    crashed run never leaves the registry locked. It orders runs on one machine (or on one NFS mount with working
    locks); the file also names the holder, for whoever waits.
    """
    folder = models_dir(data_root)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / PROMOTION_LOCK_FILE).open("a+") as lock:
        waited_since = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told or time.monotonic() - waited_since >= LOCK_NOTICE_SECONDS:
                    lock.seek(0)
                    other = lock.read().strip() or "another run"
                    notify(f"waiting for {other} to finish promoting (lock {folder / PROMOTION_LOCK_FILE})")
                    told, waited_since = True, time.monotonic()
                time.sleep(0.2)
        if told:
            notify("promotion lock acquired")
        lock.seek(0)
        lock.truncate()
        lock.write(f"run {holder} (pid {os.getpid()})\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            lock.flush()
            fcntl.flock(lock, fcntl.LOCK_UN)
