"""Copies of one photo in an archive: duplicates in a class, the same photo under two classes, damaged copies.

Whatever copy sorts or sits first in the zip, in count mode and fraction mode and in an archive's own split,
preparation either succeeds with every photo used once, in one class and on one side, or fails with a
ValueError that names the class short of photos. The property test checks this on generated archives against
a plain model of what the archive holds.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from tuneflow.config import DataSettings
from tuneflow.dataset.prepare import prepare_dataset
from tuneflow.dataset.split import val_size


@functools.cache
def photo(number: int) -> bytes:
    """A distinct 32-px JPEG (the smallest ResNet50 takes) per number."""
    pixels = np.random.default_rng(number).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


PHOTO_OF_SHA = {hashlib.sha256(photo(number)).hexdigest(): number for number in range(256)}


class File(NamedTuple):
    path: str
    label: str
    side: str | None  # train/val folder of an archive that is already split
    photo: int
    damaged: bool  # its bytes damaged inside the zip: a read-error, and no evidence of what photo it is


def write_archive(path: Path, files: list[File]) -> Path:
    """Zip the files in the order given, storing them uncompressed so that damage can be done to chosen ones."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.writestr(file.path, photo(file.photo))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        for info, file in zip(archive.infolist(), files):
            if file.damaged:
                start = info.header_offset + 30 + len(info.filename.encode())  # past the local header
                data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def prepare(tmp_path: Path, name: str, files: list[File], seed: int = 7, **data) -> pd.DataFrame | str:
    """The manifest of a preparation, or the message of the ValueError that refused it."""
    archive = write_archive(tmp_path / f"{name}.zip", files)
    try:
        prepared = prepare_dataset(archive, tmp_path / name / "dataset", DataSettings(**data), seed)
    except ValueError as error:
        return str(error)
    table = pd.read_csv(prepared.manifest, keep_default_na=False)
    on_disk = sorted(str(p.relative_to(prepared.root)) for p in prepared.root.rglob("*.jpg"))
    assert on_disk == sorted(table.loc[table["status"] == "kept", "file"])
    for relative in on_disk:  # what is on disk is what the manifest says: the photo's own bytes
        assert hashlib.sha256((prepared.root / relative).read_bytes()).hexdigest() in PHOTO_OF_SHA
    assert {(side, label): count for side, per in prepared.counts.items() for label, count in per.items()} == {
        (side, label): ((table["split"] == side) & (table["class"] == label) & (table["status"] == "kept")).sum()
        for side in ("train", "val") for label in prepared.classes
    }  # fmt: skip
    return table


def usable_photos(files: list[File]) -> dict[str, dict[int, str]]:
    """Per class, the photos it can use and their side: an intact copy in this class and in no other class.

    A photo in an already split archive goes to train when any intact copy of it is under train/.
    """
    classes_of: dict[int, set[str]] = {}
    for file in files:
        if not file.damaged:
            classes_of.setdefault(file.photo, set()).add(file.label)
    usable: dict[str, dict[int, str]] = {file.label: {} for file in files}
    for file in files:
        if not file.damaged and classes_of[file.photo] == {file.label}:
            side = usable[file.label].get(file.photo)
            usable[file.label][file.photo] = "train" if "train" in (side, file.side) else (file.side or "train")
    return usable


# ------------------------------------------------------------------------------------------- property test

CLASS_NAMES = ("aaa_copies", "pizza", "sushi", "zzz_copies")  # copies under a class that sorts first or last


@st.composite
def archives(draw) -> tuple[list[File], list[File], dict]:
    """Files of a small archive (in a drawn member order and in path order) and the data settings to use."""
    labels = draw(st.lists(st.sampled_from(CLASS_NAMES), min_size=2, max_size=3, unique=True))
    split_layout = draw(st.booleans())
    # Each class's own photos, then copies of any of them filed again in the same class or another one.
    owned = [(label, photo_number) for c, label in enumerate(labels) for photo_number in
             range(10 * c, 10 * c + draw(st.integers(2, 7)))]  # fmt: skip
    copies = draw(st.lists(st.tuples(st.sampled_from(labels), st.sampled_from(owned)), max_size=6))
    files = []
    filed = owned + [(label, photo_number) for label, (_, photo_number) in copies]
    for number, (label, photo_number) in enumerate(filed):
        prefix = draw(st.sampled_from(["a", "m", "z"]))  # which copy of a photo sorts first
        side = draw(st.sampled_from(["train", "val"])) if split_layout else None
        damaged = draw(st.integers(0, 9)) == 9  # one file in 10 damaged in the zip (0, the simplest, is intact)
        folder = f"{side}/{label}" if split_layout else f"photos/{label}"
        files.append(File(f"{folder}/{prefix}{number}.jpg", label, side, photo_number, damaged))
    # zipping shows a split layout only with photos under both train/ and val/
    assume(not split_layout or {file.side for file in files} == {"train", "val"})
    if draw(st.booleans()):
        data = {"train_per_class": draw(st.integers(1, 3)), "val_per_class": draw(st.integers(1, 2))}
        data["split_method"] = "seeded"
    else:
        data = {"val_fraction": draw(st.sampled_from([0.2, 0.5]))}  # auto: an already split archive keeps its split
    shuffled = draw(st.permutations(files))
    return list(shuffled), sorted(files), data


@settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(archives())
def test_every_photo_is_used_once_whatever_its_copies_and_the_member_order(tmp_path_factory, archive):
    shuffled, ordered, data = archive
    tmp_path = tmp_path_factory.mktemp("archive")
    result = prepare(tmp_path, "shuffled", shuffled, **data)
    assert_same(result, prepare(tmp_path, "ordered", ordered, **data))  # the member order changes nothing

    usable = usable_photos(ordered)
    if len(usable) < 2:
        assert isinstance(result, str) and "a classifier needs at least 2 class folders" in result
        return
    expected = expected_counts(usable, data, split_layout=ordered[0].side is not None)
    short = [label for label, counts in expected.items() if counts is None]
    copied = {file.photo for file in ordered if sum(other.photo == file.photo for other in ordered) > 1}
    event(f"{'counts' if 'train_per_class' in data else 'fraction'}, {'split' if ordered[0].side else 'folders'}, "
          f"{'refused' if short else 'prepared'}{', copies' if copied else ''}"
          f"{', damaged' if any(file.damaged for file in ordered) else ''}")  # fmt: skip
    if short:
        assert isinstance(result, str), f"prepared although {short} lack usable photos"
        assert any(repr(label) in result for label in short), result
        return
    assert not isinstance(result, str), f"refused with enough usable photos: {result}"
    kept = result[result["status"] == "kept"]
    photos = kept["sha256"].map(PHOTO_OF_SHA)
    assert photos.is_unique  # no photo on both sides, in two classes or twice in one
    for label, photo_number, side in zip(kept["class"], photos, kept["split"]):
        assert photo_number in usable[label]
        if "train_per_class" not in data and ordered[0].side is not None:  # the archive's own split is kept
            assert side == usable[label][photo_number]
    got = {label: tuple(int(((kept["class"] == label) & (kept["split"] == side)).sum()) for side in ("train", "val"))
           for label in usable}  # fmt: skip
    assert got == expected
    assert len(result) == len(ordered)  # a row for every file


def expected_counts(usable: dict[str, dict[int, str]], data: dict, split_layout: bool) -> dict:
    """Per class, the (train, val) images it must get, or None where it has too few usable photos."""
    expected: dict[str, tuple[int, int] | None] = {}
    for label, photos in usable.items():
        if "train_per_class" in data:
            counts = data["train_per_class"], data["val_per_class"]
            expected[label] = counts if len(photos) >= sum(counts) else None
        elif split_layout:
            val = sum(side == "val" for side in photos.values())
            expected[label] = (len(photos) - val, val) if 0 < val < len(photos) else None
        else:
            val = val_size(len(photos), data["val_fraction"])
            expected[label] = (len(photos) - val, val) if len(photos) >= 2 else None
    return expected


def assert_same(one: pd.DataFrame | str, other: pd.DataFrame | str) -> None:
    if isinstance(one, str) or isinstance(other, str):
        assert one == other
        return
    pd.testing.assert_frame_equal(one, other)


# ------------------------------------------------------------------------------------- the cases as found


def test_count_mode_on_an_archive_with_duplicates_and_photos_copied_across_classes(tmp_path):
    """The real archive's shape that crashed count mode with a KeyError: copies whose first copy was never read."""
    files = [File(f"{label}/{i:03d}.jpg", label, None, base + i, False)
             for label, base in (("pizza", 0), ("sushi", 100)) for i in range(12)]  # fmt: skip
    files += [File(f"pizza/again_{i}.jpg", "pizza", None, i, False) for i in range(12)]  # every pizza twice
    files += [File(f"sushi/{i:03d}_pizza.jpg", "sushi", None, i, False) for i in (3, 4)]  # two pizzas as sushi
    for seed in range(4):
        prepared = prepare_dataset(
            write_archive(tmp_path / "d.zip", files), tmp_path / f"run{seed}" / "dataset",
            DataSettings(train_per_class=6, val_per_class=3), seed,
        )  # fmt: skip
        assert prepared.counts == {"train": {"pizza": 6, "sushi": 6}, "val": {"pizza": 3, "sushi": 3}}
        table = pd.read_csv(prepared.manifest)
        assert table.loc[table["status"] == "kept", "sha256"].is_unique
        kept = set(table.loc[table["status"] == "kept", "sha256"].map(PHOTO_OF_SHA))
        assert not kept & {3, 4}  # filed under both classes: its label is unknown


def test_a_photo_whose_first_copy_is_damaged_is_kept_once(tmp_path):
    files = [File(f"pizza/{i:03d}.jpg", "pizza", None, i, False) for i in range(6)]
    files += [File(f"sushi/{i:03d}.jpg", "sushi", None, 100 + i, False) for i in range(6)]
    files += [File("pizza/a.jpg", "pizza", None, 50, True)]  # sorts first, damaged in the zip
    files += [File("pizza/b.jpg", "pizza", None, 50, False), File("pizza/c.jpg", "pizza", None, 50, False)]
    table = prepare(tmp_path, "run", files)
    rows = table.set_index("path")
    assert rows.loc["pizza/a.jpg", "reason"] == "read-error"
    assert list(rows.loc[["pizza/b.jpg", "pizza/c.jpg"], "status"]) == ["kept", "skipped"]
    assert rows.loc["pizza/c.jpg", "reason"] == "duplicate"
    assert (table["status"] == "kept").sum() == 13


@pytest.mark.parametrize("damaged_first", ["aaa", "zzz"])
def test_a_damaged_copy_under_another_class_does_not_cost_the_intact_one(tmp_path, damaged_first):
    files = [File(f"pizza/{i:03d}.jpg", "pizza", None, i, False) for i in range(4)]
    files += [File(f"sushi/{i:03d}.jpg", "sushi", None, 100 + i, False) for i in range(5)]
    files += [File(f"{damaged_first}/x.jpg", damaged_first, None, 50, True)]  # unreadable: no evidence of a label
    files += [File(f"{damaged_first}/{i}.jpg", damaged_first, None, 200 + i, False) for i in range(10)]
    files += [File("pizza/x.jpg", "pizza", None, 50, False)]  # pizza's fifth photo
    for seed in range(6):  # whether the damaged copy ranks among the images its class needs
        table = prepare(tmp_path, f"run{seed}", files, seed, train_per_class=3, val_per_class=2)
        assert not isinstance(table, str), table
        rows = table.set_index("path")
        assert rows.loc["pizza/x.jpg", "status"] == "kept"
        assert rows.loc[f"{damaged_first}/x.jpg", "reason"] in ("read-error", "over-per-class-count")


# ------------------------------------------------------------------------------- a stray folder of copies


def stray_folder_archive(tmp_path: Path) -> Path:
    """Two real classes and 'testpile', made only of copies of their photos (as in the real Food-101 upload)."""
    files = [File(f"food/{label}/{i:03d}.jpg", label, None, base + i, False)
             for label, base in (("pizza", 0), ("sushi", 100)) for i in range(8)]  # fmt: skip
    files += [File(f"food/testpile/{i}.jpg", "testpile", None, number, False) for i, number in enumerate((1, 2, 101))]
    return write_archive(tmp_path / "d.zip", files)


@pytest.mark.parametrize("counts", [{}, {"train_per_class": 2, "val_per_class": 1}])
def test_a_stray_folder_of_copies_says_how_to_leave_it_out_and_can_be(tmp_path, counts):
    archive = stray_folder_archive(tmp_path)
    with pytest.raises(ValueError, match=r"class 'testpile' has 0 usable images of 3 files \(3 skipped: 3 "
                       r"label-conflict\).* leave the class out: --exclude-classes testpile "
                       r"\(data\.exclude_classes=\['testpile'\] in a flow or deployment\)$"):  # fmt: skip
        prepare_dataset(archive, tmp_path / "refused" / "dataset", DataSettings(**counts), 0)

    prepared = prepare_dataset(
        archive, tmp_path / "run" / "dataset", DataSettings(exclude_classes=["testpile"], **counts), 0
    )
    assert prepared.classes == ["pizza", "sushi"]
    totals = {label: prepared.counts["train"][label] + prepared.counts["val"][label] for label in prepared.classes}
    # Left out, the folder's copies no longer give photos a second label: none is lost to a label conflict.
    assert totals == ({"pizza": 3, "sushi": 3} if counts else {"pizza": 8, "sushi": 8})
    assert prepared.label_conflicts == {} and prepared.ignored.get("class-not-selected") == 3
    rows = pd.read_csv(prepared.manifest).set_index("path")
    assert rows.loc["food/testpile/0.jpg", "detail"] == "class 'testpile' in exclude_classes"
    assert "classes left out (exclude_classes): 'testpile'" in prepared.notes


def test_leaving_out_a_class_the_archive_does_not_have_names_the_ones_it_has(tmp_path):
    archive = stray_folder_archive(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"^exclude_classes: class 'testpil' is not in the archive; it has \['pizza', 'sushi', 'testpile'\]\. "
        r"Did you mean 'testpile'\?$",
    ):
        prepare_dataset(archive, tmp_path / "a" / "dataset", DataSettings(exclude_classes=["testpil"]), 0)
    with pytest.raises(ValueError, match=r"leaves \['sushi'\] of the archive's .* needs at least 2 classes"):
        prepare_dataset(archive, tmp_path / "b" / "dataset", DataSettings(exclude_classes=["pizza", "testpile"]), 0)


def test_with_classes_named_one_by_one_the_fix_is_to_name_it_no_more(tmp_path):
    # sushi not chosen, its photo in testpile is no longer a label conflict: 1 usable
    with pytest.raises(ValueError, match=r"class 'testpile' has 1 usable .* leave the class out: drop it from "
                       r"--classes \(data\.classes in a flow or deployment\)$"):  # fmt: skip
        prepare_dataset(stray_folder_archive(tmp_path), tmp_path / "run" / "dataset",
                        DataSettings(classes=["pizza", "testpile"]), 0)  # fmt: skip
