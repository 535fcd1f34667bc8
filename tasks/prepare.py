"""Prepare step: read the archive's class folders, split each class train/val, extract into the split layout."""

from __future__ import annotations

import difflib
import random
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from prefect import task
from pydantic import BaseModel

from tuneflow.config import DataSettings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}
NOISE_FOLDERS = {"__MACOSX"}
SPLITS = ("train", "val")
# Written last inside the dataset folder: its presence means the extraction finished.
PREPARED_RECORD = "prepared.json"


class Split(BaseModel):
    """Archive member names per split and class."""

    train: dict[str, list[str]]
    val: dict[str, list[str]]


class PreparedDataset(BaseModel):
    """A dataset laid out as root/train/<class>/* and root/val/<class>/*."""

    root: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]


def list_images_by_class(archive: Path) -> dict[str, list[str]]:
    """Image members of the zip grouped by the folder they sit in (Food-101: food-101/images/<class>/x.jpg)."""
    by_class: dict[str, list[str]] = {}
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            path = PurePosixPath(member.filename)
            if member.is_dir() or len(path.parts) < 2 or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if NOISE_FOLDERS & set(path.parts) or any(part.startswith(".") for part in path.parts):
                continue
            by_class.setdefault(path.parent.name, []).append(member.filename)
    return {name: sorted(members) for name, members in sorted(by_class.items())}


def select_classes(by_class: dict[str, list[str]], wanted: list[str] | None) -> dict[str, list[str]]:
    """Keep the wanted classes (all when None), failing with the available names for an unknown one."""
    available = sorted(by_class)
    if not available:
        raise ValueError(
            "the archive holds no images in class folders; expected e.g. food-101/images/<class>/*.jpg "
            "or dataset/<class>/*.jpg"
        )
    chosen = wanted or available
    for name in chosen:
        if name not in by_class:
            closest = difflib.get_close_matches(name, available, n=1)
            hint = f" Did you mean {closest[0]!r}?" if closest else ""
            raise ValueError(f"class {name!r} is not in the archive; it has {available}.{hint}")
    if len(chosen) < 2:
        raise ValueError(f"the archive has only the class {chosen}; a classifier needs at least 2 class folders")
    return {name: by_class[name] for name in sorted(chosen)}


def split_files(by_class: dict[str, list[str]], val_fraction: float, seed: int) -> Split:
    """Stratified split: each class shuffled with its own seeded generator, then cut at round(n * val_fraction)."""
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    for name, members in by_class.items():
        if len(members) < 2:
            raise ValueError(
                f"class folder {name!r} has {len(members)} image; need at least 2 for a train/val split"
            )
        shuffled = sorted(members)
        # Seeding per class keeps a class's split stable when other classes are added or removed.
        random.Random(f"{seed}/{name}").shuffle(shuffled)
        val_count = min(max(1, round(len(shuffled) * val_fraction)), len(shuffled) - 1)
        val[name] = sorted(shuffled[:val_count])
        train[name] = sorted(shuffled[val_count:])
    return Split(train=train, val=val)


def extract_split(archive: Path, split: Split, dest: Path) -> PreparedDataset:
    """Stream each chosen member straight to dest/<split>/<class>/<file name>; other members are never read."""
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; each run prepares its dataset into a new folder")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        for split_name in SPLITS:
            for class_name, members in getattr(split, split_name).items():
                folder = partial / split_name / class_name
                folder.mkdir(parents=True)
                for member in members:
                    # The target name is built from the base name only, so no member path can escape dest.
                    target = folder / PurePosixPath(member).name
                    suffix = 2
                    while target.exists():
                        target = folder / f"{PurePosixPath(member).stem}-{suffix}{PurePosixPath(member).suffix}"
                        suffix += 1
                    with zipped.open(member) as source, target.open("wb") as sink:
                        shutil.copyfileobj(source, sink)
    counts = {name: {c: len(m) for c, m in getattr(split, name).items()} for name in SPLITS}
    prepared = PreparedDataset(root=dest, classes=sorted(split.train), counts=counts)
    (partial / PREPARED_RECORD).write_text(prepared.model_dump_json(indent=2))
    partial.rename(dest)
    return prepared


def prepare_dataset(archive: Path, dest: Path, settings: DataSettings, seed: int) -> PreparedDataset:
    """Split and extract the archive into dest; a resumed run finds dest complete and reuses it."""
    if (dest / PREPARED_RECORD).is_file():
        return PreparedDataset.model_validate_json((dest / PREPARED_RECORD).read_text())
    by_class = select_classes(list_images_by_class(archive), settings.classes)
    return extract_split(archive, split_files(by_class, settings.val_fraction, seed), dest)


@task(name="prepare-dataset")
def prepare(archive: Path, dest: Path, settings: DataSettings, seed: int) -> PreparedDataset:
    """Split the archive's classes into train/val folders under the run directory."""
    return prepare_dataset(archive, dest, settings, seed)
