"""Preparing real dataset zips: every layout, the exact split, hostile and broken input, manifest and reuse.

Each test builds its own tiny zip (32-px images made with Pillow) and checks what a user would: which files land
where, the exact error text or skip reason, and that nothing is written outside the run folder.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tuneflow.dataset.prepare as prepare_module
import tuneflow.dataset.extract as extract_module
from tuneflow.dataset.prepare import prepare_dataset
from tuneflow.records import PreparedDataset
from tuneflow.config import DataSettings
from tuneflow.dataset.archive import ArchiveError
from tuneflow.dataset.images import Inspection, inspect_image
from tuneflow.dataset.split import SplitError, content_order, deal, val_size

# ---------------------------------------------------------------------------------------------------- helpers


def image_bytes(seed: int, size: tuple[int, int] = (32, 32), fmt: str = "JPEG", mode: str = "RGB", **save) -> bytes:
    """A distinct little noise image: a different seed gives different bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def write_zip(path: Path, entries, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """entries: {name or ZipInfo: bytes} or a list of (name or ZipInfo, bytes) pairs."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items() if isinstance(entries, dict) else entries:
            archive.writestr(name, data)
    return path


def class_folders(classes: dict[str, int], top: str = "", start: int = 0) -> dict[str, bytes]:
    return {
        f"{top}{label}/{i:04d}.jpg": image_bytes(start + 1000 * c + i)
        for c, (label, count) in enumerate(classes.items())
        for i in range(count)
    }


def run(tmp_path: Path, archive: Path, seed: int = 0, run_name: str = "run", **settings) -> PreparedDataset:
    return prepare_dataset(archive, tmp_path / run_name / "dataset", DataSettings(**settings), seed)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def images(prepared: PreparedDataset) -> list[str]:
    """The split photos: every file of the dataset folder but its record."""
    return [name for name in listing(prepared.root) if name != "prepared.json"]


def manifest(prepared: PreparedDataset) -> pd.DataFrame:
    return pd.read_csv(prepared.manifest, keep_default_na=False)


def assert_only_run_folder_written(tmp_path: Path, archive: Path, run_name: str = "run") -> None:
    outside = [
        p for p in tmp_path.rglob("*")
        if p != archive and not p.is_relative_to(tmp_path / run_name) and not p.is_dir()
    ]  # fmt: skip
    assert outside == []
    assert not any(p.is_symlink() for p in (tmp_path / run_name).rglob("*"))
    assert listing(tmp_path / run_name) == sorted(
        ["manifest.csv"] + [f"dataset/{p}" for p in listing(tmp_path / run_name / "dataset")]
    )


def patch_bytes(path: Path, old: bytes, new: bytes, count: int = 2) -> None:
    """Rewrite bytes in a written zip (names, header fields) to craft what zipfile refuses to write."""
    data = path.read_bytes()
    assert data.count(old) == count, (old, data.count(old))
    path.write_bytes(data.replace(old, new))


# ---------------------------------------------------------------------------------------------------- layouts


def test_class_folders_at_the_root(tmp_path):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 10, "dog": 10}))
    prepared = run(tmp_path, archive)
    assert prepared.layout == "class-folders" and prepared.split_method == "seeded"
    assert prepared.classes == ["cat", "dog"]
    assert prepared.counts == {"train": {"cat": 8, "dog": 8}, "val": {"cat": 2, "dog": 2}}
    assert len(images(prepared)) == 20 and (prepared.root / "prepared.json").is_file()
    assert_only_run_folder_written(tmp_path, archive)


def test_class_folders_under_wrapper_folders_with_nested_photos(tmp_path):
    entries = class_folders({"cat": 4, "dog": 4}, top="Users/me/dataset/")
    entries["Users/me/dataset/cat/2019/summer/IMG_1.JPG"] = image_bytes(99)
    archive = write_zip(tmp_path / "d.zip", entries)
    prepared = run(tmp_path, archive)
    assert prepared.layout == "class-folders"
    assert prepared.notes[0] == "layout: one folder per class under Users/me/dataset/"
    assert prepared.counts["train"]["cat"] + prepared.counts["val"]["cat"] == 5
    assert any(p.endswith("cat/2019__summer__IMG_1.jpg") for p in images(prepared))


@pytest.mark.parametrize("val_folder", ["val", "validation", "valid", "test"])
def test_already_split_archive_is_kept_as_given(tmp_path, val_folder):
    entries = {**class_folders({"cat": 5, "dog": 4}, top="dataset/train/")}
    entries.update(class_folders({"cat": 2, "dog": 3}, top=f"dataset/{val_folder}/", start=50_000))
    archive = write_zip(tmp_path / "d.zip", entries)
    prepared = run(tmp_path, archive, seed=123)
    assert prepared.layout == "split-folders" and prepared.split_method == "archive"
    assert prepared.counts == {"train": {"cat": 5, "dog": 4}, "val": {"cat": 2, "dog": 3}}
    assert images(prepared) == sorted(
        f"{'train' if '/train/' in name else 'val'}/{name.split('/')[-2]}/{name.split('/')[-1]}" for name in entries
    )
    assert "kept the archive's own train/val split; val_fraction does not apply" in prepared.notes


def test_split_archive_with_val_and_test_uses_val_and_ignores_test(tmp_path):
    entries = {**class_folders({"cat": 3, "dog": 3}, top="train/")}
    entries.update(class_folders({"cat": 1, "dog": 1}, top="val/", start=10_000))
    entries.update(class_folders({"cat": 2, "dog": 2}, top="test/", start=20_000))
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    assert prepared.counts == {"train": {"cat": 3, "dog": 3}, "val": {"cat": 1, "dog": 1}}
    assert prepared.ignored == {"outside-split-folders": 4}
    rows = manifest(prepared).query("reason == 'outside-split-folders'")
    assert set(rows["detail"]) == {"'test/' is not used: 'val/' is the validation side"}


def test_split_archive_can_be_resplit_by_seed(tmp_path):
    entries = {**class_folders({"cat": 8, "dog": 8}, top="train/")}
    entries.update(class_folders({"cat": 2, "dog": 2}, top="val/", start=10_000))
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries), split_method="seeded", val_fraction=0.5)
    assert prepared.split_method == "seeded"
    assert prepared.counts == {"train": {"cat": 5, "dog": 5}, "val": {"cat": 5, "dog": 5}}


def test_split_settings_that_contradict_the_archive_fail_with_the_fix(tmp_path):
    folders = write_zip(tmp_path / "folders.zip", class_folders({"cat": 4, "dog": 4}))
    with pytest.raises(ArchiveError, match=r"'archive' needs an archive with its own split .* use split_method='auto'"):
        run(tmp_path, folders, split_method="archive")
    split = {**class_folders({"cat": 4, "dog": 4}, top="train/"), **class_folders({"cat": 1, "dog": 1}, "val/", 99)}
    with pytest.raises(ArchiveError, match=r"already split into train/ and val/ .* split_method='seeded' to re-split"):
        run(tmp_path, write_zip(tmp_path / "split.zip", split), train_per_class=3, val_per_class=1)
    with pytest.raises(ValueError, match=r"train_per_class=3 and val_per_class=None: set both"):
        DataSettings(train_per_class=3)
    with pytest.raises(ValueError, match=r"val_per_class choose a seeded split, but split_method='archive' keeps"):
        DataSettings(train_per_class=3, val_per_class=1, split_method="archive")
    lopsided = {**class_folders({"cat": 4, "dog": 4}, top="train/"), **class_folders({"cat": 2}, top="val/", start=99)}
    with pytest.raises(SplitError, match=r"^class 'dog' has no usable val images in the archive's own split; add some"):
        run(tmp_path, write_zip(tmp_path / "lopsided.zip", lopsided))


def food101_zip(path: Path, classes: dict[str, int]) -> Path:
    entries = class_folders(classes, top="food-101/images/")
    train = [name for name in entries if int(name[-8:-4]) % 4]
    test = [name for name in entries if not int(name[-8:-4]) % 4]
    key = lambda name: name.removeprefix("food-101/images/").removesuffix(".jpg")  # noqa: E731
    entries["food-101/meta/classes.txt"] = "\n".join(classes).encode()
    entries["food-101/meta/train.txt"] = "\n".join(map(key, train[:-1])).encode()  # one image listed nowhere
    entries["food-101/meta/test.txt"] = "\n".join(map(key, test)).encode()
    entries["food-101/README.txt"] = b"Food-101"
    return write_zip(path, entries)


def test_food101_archive_is_split_by_seed_by_default(tmp_path):
    prepared = run(tmp_path, food101_zip(tmp_path / "food.zip", {"apple_pie": 10, "pizza": 10, "sashimi": 10}))
    assert prepared.layout == "food-101" and prepared.split_method == "seeded"
    assert prepared.counts == {"train": dict.fromkeys(prepared.classes, 8), "val": dict.fromkeys(prepared.classes, 2)}
    assert prepared.ignored == {"not-an-image-file": 4}  # classes/train/test.txt and README.txt


def test_food101_meta_split_when_asked(tmp_path):
    prepared = run(tmp_path, food101_zip(tmp_path / "food.zip", {"apple_pie": 8, "pizza": 8}), split_method="archive")
    assert prepared.split_method == "archive"
    # ids 0 and 4 are in test.txt; 1, 2, 3, 5, 6, 7 in train.txt except the last pizza one, listed nowhere
    assert prepared.counts == {"train": {"apple_pie": 6, "pizza": 5}, "val": {"apple_pie": 2, "pizza": 2}}
    assert sorted(os.listdir(prepared.root / "val" / "pizza")) == ["0000.jpg", "0004.jpg"]
    unlisted = manifest(prepared).query("reason == 'not-in-archive-split'")
    assert list(unlisted["path"]) == ["food-101/images/pizza/0007.jpg"]


def test_noise_is_ignored_and_counted(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3}, top="dataset/")
    entries.update({
        "__MACOSX/dataset/cat/._0000.jpg": b"\x00\x05\x16\x07",
        "dataset/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "dataset/dog/Thumbs.db": b"\xd0\xcf\x11\xe0",
        "dataset/cat/notes.txt": b"good cats",
        "dataset/README.md": b"# photos",
        "dataset/dog/clip.mp4": b"\x00\x00\x00\x18ftypmp42",
        "dataset/cat/IMG_2.JPG": image_bytes(900),
        "dataset/dog/photo.jpeg": image_bytes(901),
    })  # fmt: skip
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    assert prepared.classes == ["cat", "dog"]
    assert prepared.ignored == {"noise": 3, "not-an-image-file": 3}
    assert prepared.skipped == {}
    assert prepared.files_seen == 14 and len(manifest(prepared)) == 14
    assert sorted(name.split("/", 1)[1] for name in images(prepared)) == [
        "cat/0000.jpg", "cat/0001.jpg", "cat/0002.jpg", "cat/IMG_2.jpg",
        "dog/0000.jpg", "dog/0001.jpg", "dog/0002.jpg", "dog/photo.jpg",
    ]  # fmt: skip


def test_archive_without_a_layout_shows_what_it_found_and_what_is_accepted(tmp_path):
    loose = write_zip(tmp_path / "loose.zip", {f"{i}.jpg": image_bytes(i) for i in range(3)} | {"a.txt": b"x"})
    with pytest.raises(ArchiveError) as error:
        run(tmp_path, loose)
    message = str(error.value)
    assert "loose.zip fits no dataset layout: found 3 images at the top of the archive and no class folders " in message
    assert "(and 1 not-an-image-file)" in message
    assert "accepted layouts:" in message and "train/<class>/<photo> + val/<class>/<photo>" in message
    assert "food-101/images/<class>/<photo> + food-101/meta/" in message
    with pytest.raises(ArchiveError, match="fits no dataset layout: found no images \\(and 2 not-an-image-file\\)"):
        run(tmp_path, write_zip(tmp_path / "text.zip", {"docs/a.txt": b"x", "docs/b.txt": b"y"}))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------- classes


def test_classes_select_a_subset(tmp_path):
    archive = write_zip(tmp_path / "d.zip", class_folders({"apple_pie": 5, "hot_dog": 5, "pizza": 5, "ramen": 5}))
    prepared = run(tmp_path, archive, classes=["pizza", "apple_pie"])
    assert prepared.classes == ["apple_pie", "pizza"]
    assert sorted(os.listdir(prepared.root / "train")) == ["apple_pie", "pizza"]
    assert prepared.ignored == {"class-not-selected": 10}


def test_unknown_class_lists_the_available_ones_and_the_closest(tmp_path):
    archive = write_zip(tmp_path / "d.zip", class_folders({"apple_pie": 3, "pizza": 3, "sashimi": 3}))
    with pytest.raises(
        ArchiveError,
        match=r"^class 'piza' is not in the archive; it has \['apple_pie', 'pizza', 'sashimi'\]\. "
        r"Did you mean 'pizza'\?$",
    ):
        run(tmp_path, archive, classes=["apple_pie", "piza"])
    with pytest.raises(ArchiveError, match=r"^classes 'Pizza', 'ramen' are not .* Did you mean 'pizza' for 'Pizza'\?$"):
        run(tmp_path, archive, classes=["Pizza", "ramen"])


def test_archive_with_one_class_is_refused(tmp_path):
    with pytest.raises(ArchiveError, match=r"only the class \['pizza'\]; a classifier needs at least 2"):
        run(tmp_path, write_zip(tmp_path / "d.zip", class_folders({"pizza": 4}, top="dataset/")))


def test_class_too_small_to_split_names_itself_and_its_count(tmp_path):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 5, "dog": 1}))
    with pytest.raises(SplitError, match=r"^class 'dog' has 1 image file\(s\); need at least 2 to split it"):
        run(tmp_path, archive)
    entries = class_folders({"cat": 5, "dog": 2})
    entries["dog/0001.jpg"] = b"not a picture"
    with pytest.raises(
        SplitError,
        match=r"^class 'dog' has 1 usable image of 2 files \(1 skipped: 1 not-an-image\); need at least 2 to split",
    ):
        run(tmp_path, write_zip(tmp_path / "d2.zip", entries))
    assert listing(tmp_path / "run") == []


# ---------------------------------------------------------------------------------------------------- split


def test_food101_counts_split_exactly_800_200():
    split = deal(content_order(range(1000), 1), "apple_pie", 0.2)
    assert (len(split.train), len(split.val), split.unused) == (800, 200, [])
    split = deal(content_order(range(1000), 1), "apple_pie", 0.5, counts=(800, 200))
    assert (len(split.train), len(split.val), split.unused) == (800, 200, [])


def test_uneven_class_rounds_to_the_nearest_image():
    assert (val_size(999, 0.2), val_size(7, 0.2), val_size(2, 0.9), val_size(5, 0.1)) == (200, 1, 1, 1)
    split = deal(list(range(999)), "a", 0.2)
    assert (len(split.train), len(split.val)) == (799, 200)
    split = deal(list(range(1200)), "a", 0.2, counts=(800, 200))
    assert (len(split.train), len(split.val), len(split.unused)) == (800, 200, 200)
    with pytest.raises(SplitError, match=r"class 'a' has 999 usable images; train_per_class=800 \+ val_per_class=200"):
        deal(list(range(999)), "a", 0.2, counts=(800, 200))


def test_no_file_on_both_sides_and_none_lost():
    items = [f"f{i}" for i in range(30)]
    split = deal(content_order(items, 3), "a", 0.3)
    assert not set(split.train) & set(split.val)
    assert sorted(split.train + split.val) == sorted(items)


def test_uneven_classes_are_split_exactly_and_reported(tmp_path):
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", class_folders({"a": 20, "b": 20, "c": 19, "d": 7})))
    assert prepared.counts == {"train": {"a": 16, "b": 16, "c": 15, "d": 6}, "val": {"a": 4, "b": 4, "c": 4, "d": 1}}
    assert "uneven classes: most have 20 usable images; 'd' 7 (6/1), 'c' 19 (15/4) (train/val)" in prepared.notes


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 20, "dog": 20}))
    first = images(run(tmp_path, archive, seed=7, run_name="a"))
    again = images(run(tmp_path, archive, seed=7, run_name="b"))
    other = images(run(tmp_path, archive, seed=8, run_name="c"))
    assert first == again
    assert first != other and sorted(p.split("/", 1)[1] for p in first) == sorted(p.split("/", 1)[1] for p in other)


def test_exact_counts_survive_skipped_files(tmp_path):
    entries = class_folders({"cat": 10, "dog": 10})
    entries["cat/0003.jpg"] = b"GIF89a broken"
    entries["cat/0007.jpg"] = image_bytes(7)[:-300]  # the end cut off
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    assert prepared.counts == {"train": {"cat": 6, "dog": 8}, "val": {"cat": 2, "dog": 2}}  # 8 usable: 1.6 -> 2
    assert prepared.skipped == {"corrupt": 1, "truncated": 1}


def test_per_class_counts_are_exact_and_stand_ins_replace_bad_files(tmp_path):
    entries = class_folders({"cat": 12, "dog": 12})
    for i in (0, 5, 9):
        entries[f"cat/{i:04d}.jpg"] = b"\xff\xd8\xff\xe0 not really %d" % i
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries), train_per_class=6, val_per_class=2)
    assert prepared.counts == {"train": {"cat": 6, "dog": 6}, "val": {"cat": 2, "dog": 2}}
    table = manifest(prepared).set_index("path")
    assert (table["status"] == "kept").sum() == 16
    # Past the counts files are not read at all, so a bad one there is simply not needed.
    bad = table.loc[["cat/0000.jpg", "cat/0005.jpg", "cat/0009.jpg"]]
    assert set(zip(bad["status"], bad["reason"])) <= {("skipped", "corrupt"), ("ignored", "over-per-class-count")}
    assert sum(prepared.skipped.values()) + prepared.ignored["over-per-class-count"] == 8
    with pytest.raises(
        SplitError,
        match=r"class 'cat' has 9 usable images of 12 files \(3 skipped: 3 corrupt\); train_per_class=8 \+ "
        r"val_per_class=4 needs 12",
    ):
        run(tmp_path, write_zip(tmp_path / "d.zip", entries), run_name="r2", train_per_class=8, val_per_class=4)


def test_duplicates_never_straddle_the_split_and_are_reported(tmp_path):
    entries = class_folders({"cat": 12, "dog": 12})
    for i in range(6):  # every other cat photo saved twice more under other names
        entries[f"cat/copy_{i}.jpg"] = entries[f"cat/{i * 2:04d}.jpg"]
        entries[f"cat/again/{i}.jpg"] = entries[f"cat/{i * 2:04d}.jpg"]
    archive = write_zip(tmp_path / "d.zip", entries)  # a photo under two classes: see test_split_stability.py
    for seed in range(5):
        prepared = run(tmp_path, archive, seed=seed, run_name=f"run{seed}")
        table = manifest(prepared)
        kept = table.query("status == 'kept'")
        assert kept["sha256"].is_unique
        assert prepared.duplicates == 12 and prepared.skipped == {"duplicate": 12}
        assert prepared.counts == {"train": {"cat": 10, "dog": 10}, "val": {"cat": 2, "dog": 2}}
        dup = table.set_index("path").loc["cat/copy_0.jpg"]
        assert dup["status"] == "skipped" and dup["detail"].startswith("same bytes as cat/0000.jpg (kept as ")


def test_a_val_copy_of_a_train_image_is_dropped_from_an_archive_split(tmp_path):
    entries = {**class_folders({"cat": 3, "dog": 3}, top="train/")}
    entries.update(class_folders({"cat": 2, "dog": 2}, top="val/", start=10_000))
    entries["val/cat/leak.jpg"] = entries["train/cat/0001.jpg"]
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    assert prepared.counts == {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 2}}
    row = manifest(prepared).set_index("path").loc["val/cat/leak.jpg"]
    assert (row["status"], row["reason"]) == ("skipped", "duplicate")
    assert row["detail"] == "same bytes as train/cat/0001.jpg (kept as train/cat/0001.jpg)"


def with_crc(data: bytes, target: int) -> bytes:
    """data plus 4 bytes chosen so the whole has CRC-32 `target` (CRC-32 is affine: solve over GF(2))."""
    base = zlib.crc32(data + bytes(4))
    rows = [(zlib.crc32(data + (1 << bit).to_bytes(4, "little")) ^ base, 1 << bit) for bit in range(32)]
    want, chosen = target ^ base, 0
    for bit in range(32):  # Gaussian elimination on (effect, choice) pairs, pivoting on each effect bit
        pivot = next((row for row in rows if row[0] >> bit & 1), None)
        if pivot is None:
            continue
        rows = [(e ^ pivot[0], c ^ pivot[1]) if e >> bit & 1 and (e, c) != pivot else (e, c) for e, c in rows]
        rows.remove(pivot)
        if want >> bit & 1:
            want, chosen = want ^ pivot[0], chosen ^ pivot[1]
    forged = data + chosen.to_bytes(4, "little")
    assert zlib.crc32(forged) == target
    return forged


def test_different_images_with_the_same_crc_and_size_are_both_kept(tmp_path):
    first, second = image_bytes(1), image_bytes(2)
    size = max(len(first), len(second)) + 8
    first = first + bytes(size - len(first))  # zeros after the end marker, as some cameras write
    second = with_crc(second + bytes(size - 4 - len(second)), zlib.crc32(first))
    entries = {**class_folders({"cat": 4, "dog": 6}, start=10), "cat/a.jpg": first, "cat/b.jpg": second}
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    table = manifest(prepared).set_index("path")
    assert list(table.loc[["cat/a.jpg", "cat/b.jpg"], "status"]) == ["kept", "kept"]
    assert prepared.duplicates == 0 and prepared.counts["train"]["cat"] + prepared.counts["val"]["cat"] == 6


def test_a_copy_damaged_in_the_archive_does_not_cost_the_intact_one(tmp_path):
    photo = image_bytes(5)
    entries = {**class_folders({"cat": 4, "dog": 4}, start=10), "cat/a.jpg": photo, "cat/b.jpg": photo}
    archive = write_zip(tmp_path / "d.zip", entries, compression=zipfile.ZIP_STORED)
    data = archive.read_bytes()
    archive.write_bytes(data.replace(photo[-300:-260], bytes(40), 1))  # damage the first copy only
    prepared = run(tmp_path, archive)
    table = manifest(prepared).set_index("path")
    assert (table.loc["cat/a.jpg", "reason"], table.loc["cat/b.jpg", "status"]) == ("read-error", "kept")
    assert prepared.counts == {"train": {"cat": 4, "dog": 3}, "val": {"cat": 1, "dog": 1}}


def test_worker_processes_give_the_same_result(tmp_path, monkeypatch):
    entries = class_folders({"cat": 15, "dog": 15})
    entries["cat/bad.jpg"] = b"nope"
    entries["dog/copy.jpg"] = entries["dog/0003.jpg"]
    archive = write_zip(tmp_path / "d.zip", entries)
    alone = prepare_dataset(archive, tmp_path / "one" / "dataset", DataSettings(), 3, workers=1)
    monkeypatch.setattr(extract_module, "PARALLEL_MIN_FILES", 1)
    pooled = prepare_dataset(archive, tmp_path / "two" / "dataset", DataSettings(), 3, workers=2)
    assert images(alone) == images(pooled)
    assert manifest(alone).equals(manifest(pooled))
    # The helper processes alone (this process standing by) write the same files and report the same outcomes.
    with zipfile.ZipFile(archive) as opened:
        jobs = [extract_module.Job.for_member(info, i, f"x/{i}") for i, info in enumerate(opened.infolist())]
    for folder in ("in_process", "helpers"):
        (tmp_path / folder / "x").mkdir(parents=True)
    expected = extract_module.process_jobs(archive, tmp_path / "in_process", jobs, 32)
    batches = [jobs[:10], jobs[10:20], jobs[20:]]
    helped = extract_module.run_in_workers(archive, tmp_path / "helpers", batches, 32, helpers=2, here=False)
    assert sorted(helped) == sorted(expected) and len(expected) == 32
    assert listing(tmp_path / "helpers") == listing(tmp_path / "in_process")


# ---------------------------------------------------------------------------------------------------- hostile


def test_path_traversal_and_absolute_paths_are_skipped(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3}, top="dataset/")
    evil = ["../evil.jpg", "dataset/cat/../../../evil.jpg", "/etc/evil.jpg", "C:/Windows/evil.jpg",
            "dataset\\..\\..\\evil.jpg"]  # fmt: skip
    entries.update({name: image_bytes(500 + i) for i, name in enumerate(evil)})
    archive = write_zip(tmp_path / "d.zip", entries)
    prepared = run(tmp_path, archive)
    assert prepared.skipped == {"unsafe-path": 5}
    details = manifest(prepared).query("reason == 'unsafe-path'")["detail"]
    assert set(details) == {
        "climbs out of the archive with '..'", "absolute path; only paths inside the archive are used"
    }  # fmt: skip
    assert not list(tmp_path.parent.glob("evil.jpg")) and not list(tmp_path.rglob("evil*"))
    assert_only_run_folder_written(tmp_path, archive)


def test_symlink_entries_are_skipped(tmp_path):
    link = zipfile.ZipInfo("dataset/cat/link.jpg")
    link.external_attr = 0o120777 << 16  # S_IFLNK: what `zip --symlinks` writes
    entries = [*class_folders({"cat": 3, "dog": 3}, top="dataset/").items(), (link, b"/etc/passwd")]
    archive = write_zip(tmp_path / "d.zip", entries)
    prepared = run(tmp_path, archive)
    assert prepared.skipped == {"symlink": 1}
    assert "link.jpg" not in " ".join(images(prepared))
    assert_only_run_folder_written(tmp_path, archive)


def test_zip_bomb_entry_is_skipped_and_a_bomb_archive_refused(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3})
    entries["cat/bomb.jpg"] = b"\xff\xd8" + bytes(5_000_000)
    archive = write_zip(tmp_path / "d.zip", entries)
    prepared = run(tmp_path, archive)
    assert prepared.skipped == {"zip-bomb": 1}
    detail = manifest(prepared).query("reason == 'zip-bomb'")["detail"].item()
    assert "to 5,000,002 bytes), over max_compression_ratio=100; photos barely compress" in detail
    assert run(tmp_path, archive, run_name="r2", max_compression_ratio=100_000).skipped == {"not-an-image": 1}
    with pytest.raises(ArchiveError, match=r"expand to 0.0 GB, over max_uncompressed_gb=1e-06 \(zip-bomb guard\)"):
        run(tmp_path, archive, run_name="r3", max_uncompressed_gb=0.000001)
    assert not (tmp_path / "r3").exists()


def test_member_inflating_past_its_declared_size_is_not_read_in_full(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3})
    entries["cat/liar.jpg"] = image_bytes(77) + bytes(50_000)
    archive = write_zip(tmp_path / "d.zip", entries)
    with zipfile.ZipFile(archive) as opened:
        real = opened.getinfo("cat/liar.jpg").file_size
    # The central directory now claims 1,000 bytes; the deflated data holds many more.
    data = bytearray(archive.read_bytes())
    at = data.rindex(b"PK\x01\x02", 0, data.rindex(b"cat/liar.jpg"))
    assert int.from_bytes(data[at + 24 : at + 28], "little") == real
    data[at + 24 : at + 28] = (1000).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    prepared = run(tmp_path, archive)
    row = manifest(prepared).set_index("path").loc["cat/liar.jpg"]
    assert (row["reason"], row["detail"]) == ("read-error", "holds 1,001 bytes, not the 1,000 its directory entry says")


def lock(archive: Path, names: list[str]) -> Path:
    """Set the 'encrypted' flag on members, as a zip made with a password has (zipfile cannot write one)."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as opened:
        offsets = [opened.getinfo(name).header_offset for name in names]
    centrals = [data.rindex(b"PK\x01\x02", 0, data.rindex(name.encode())) for name in names]
    for at in offsets:
        data[at + 6] |= 0x1
    for at in centrals:
        data[at + 8] |= 0x1
    archive.write_bytes(bytes(data))
    return archive


def test_encrypted_entries_are_skipped_and_an_encrypted_archive_refused(tmp_path):
    entries = {**class_folders({"cat": 3, "dog": 3}), "cat/secret.jpg": image_bytes(5)}
    prepared = run(tmp_path, lock(write_zip(tmp_path / "d.zip", entries), ["cat/secret.jpg"]))
    assert prepared.skipped == {"encrypted": 1}
    detail = manifest(prepared).set_index("path").loc["cat/secret.jpg", "detail"]
    assert detail == "password-protected; re-zip the photos without a password"
    names = [f"{c}/{i}.jpg" for c in "ab" for i in range(2)]
    all_locked = lock(write_zip(tmp_path / "all.zip", {name: image_bytes(i) for i, name in enumerate(names)}), names)
    with pytest.raises(ArchiveError, match=r"every image in .*all.zip is password-protected \(4 files\); unzip it"):
        run(tmp_path, all_locked, run_name="r2")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "is a zip whose end is missing: truncated, e.g. an interrupted download or copy"),
        (b"just some text", "is not a zip archive"),
        (gzip.compress(b"tar data", mtime=0), "is a gzip file \\(.tar.gz\\?\\), not a zip"),
        (b"", "is empty \\(0 bytes\\)"),
    ],
    ids=["truncated", "text", "gzip", "empty"],  # stable names: pytest-xdist workers must collect the same tests
)
def test_truncated_or_non_zip_files_are_refused_with_the_fix(tmp_path, content, says):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 3, "dog": 3}))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2] if content is None else content)
    with pytest.raises(ArchiveError, match=f"d.zip' {says} .*make a zip of the dataset folder"):
        run(tmp_path, archive)
    assert not (tmp_path / "run").exists()


def test_the_fetch_step_already_says_what_a_non_zip_source_is(tmp_path):
    from tuneflow.fetch.archives import locate_local_archive

    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 3, "dog": 3}))
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(ValueError, match="d.zip' is a zip whose end is missing: truncated, e.g. an interrupted"):
        locate_local_archive(str(archive))


def test_damaged_member_data_is_a_read_error_skip(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3})
    archive = write_zip(tmp_path / "d.zip", entries, compression=zipfile.ZIP_STORED)
    original = entries["cat/0001.jpg"]
    patch_bytes(archive, original[-240:-200], bytes(40), count=1)  # inside the compressed picture data
    prepared = run(tmp_path, archive)
    row = manifest(prepared).set_index("path").loc["cat/0001.jpg"]
    assert (row["status"], row["reason"]) == ("skipped", "read-error")
    assert row["detail"] == "CRC-32 mismatch: the file is damaged inside the archive"


def test_unsupported_compression_and_formats_are_skipped_with_the_fix(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3})
    entries["cat/IMG_0001.HEIC"] = b"\x00\x00\x00\x18ftypheic"
    archive = write_zip(tmp_path / "d.zip", entries, compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(archive) as opened:
        info = opened.getinfo("dog/0001.jpg")
    # Rewrite that member's method to Deflate64 (9), as Windows Explorer writes for big archives.
    data = bytearray(archive.read_bytes())
    local = info.header_offset
    central = data.rindex(b"PK\x01\x02", 0, data.rindex(b"dog/0001.jpg"))
    data[local + 8 : local + 10] = data[central + 10 : central + 12] = (9).to_bytes(2, "little")
    archive.write_bytes(bytes(data))
    prepared = run(tmp_path, archive)
    assert prepared.skipped == {"unsupported-compression": 1, "unsupported-format": 1}
    details = manifest(prepared).set_index("path")["detail"]
    assert details["dog/0001.jpg"] == "compressed with Deflate64; re-zip with `zip -r` or 7-Zip (Deflate)"
    assert details["cat/IMG_0001.HEIC"] == "HEIC (iPhone) images cannot be read; export them as JPEG"


def raw_name_zip(path: Path, names: dict[bytes, bytes]) -> Path:
    """A zip whose names are raw bytes with no UTF-8 flag, as Windows' built-in zipper writes them."""
    placeholders = {raw: bytes(chr(ord("A") + i) * len(raw), "ascii") for i, raw in enumerate(names)}
    write_zip(path, {placeholder.decode(): names[raw] for raw, placeholder in placeholders.items()})
    for raw, placeholder in placeholders.items():
        patch_bytes(path, placeholder, raw)
    return path


def test_shift_jis_and_cp437_names_are_decoded(tmp_path):
    ramen, sushi = "ラーメン".encode("cp932"), "寿司".encode("cp932")
    names = {ramen + b"/" + "写真%d.jpg".encode("cp932") % i: image_bytes(i) for i in range(3)}
    names.update({sushi + b"/" + b"%d.jpg" % i: image_bytes(10 + i) for i in range(3)})
    prepared = run(tmp_path, raw_name_zip(tmp_path / "jp.zip", names))
    assert prepared.classes == ["ラーメン", "寿司"]
    assert "file names not marked UTF-8 were read as cp932" in prepared.notes
    ramen_files = os.listdir(prepared.root / "train" / "ラーメン") + os.listdir(prepared.root / "val" / "ラーメン")
    assert sorted(ramen_files) == ["写真0.jpg", "写真1.jpg", "写真2.jpg"]
    cafe = {b"Caf\x82/%d.jpg" % i: image_bytes(20 + i) for i in range(2)}
    cafe.update({b"Bar/%d.jpg" % i: image_bytes(30 + i) for i in range(2)})
    assert run(tmp_path, raw_name_zip(tmp_path / "eu.zip", cafe), run_name="r2").classes == ["Bar", "Café"]
    forced = run(tmp_path, tmp_path / "jp.zip", run_name="r3", name_encoding="cp437")
    assert forced.classes == sorted([ramen.decode("cp437"), sushi.decode("cp437")])


def test_bad_images_are_skipped_with_their_reason(tmp_path):
    entries = class_folders({"cat": 3, "dog": 3})
    entries["cat/text.jpg"] = b"this is a text file, not a photo"
    entries["cat/header.jpg"] = b"\xff\xd8\xff\xc0\x00\x11garbage-in-the-frame-header"
    entries["cat/cut.jpg"] = image_bytes(41)[:-400]
    entries["cat/tiny.png"] = image_bytes(42, size=(8, 40), fmt="PNG")
    entries["dog/empty.jpg"] = b""
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    assert prepared.skipped == {"corrupt": 1, "not-an-image": 2, "too-small": 1, "truncated": 1}
    details = manifest(prepared).set_index("path")["detail"]
    assert details["cat/text.jpg"] == "not an image file (it starts with b'this is a te')"
    assert details["cat/header.jpg"] == "starts like a JPEG file but its header is damaged"
    assert details["cat/cut.jpg"] == "JPEG data ends early (no end-of-image marker)"
    assert details["cat/tiny.png"] == "8x40 px, under min_image_size=32"
    assert prepared.counts == {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}}


def test_the_plain_jpeg_scan_agrees_with_pillow_and_leaves_the_rest_to_it():
    from tuneflow.dataset.images import plain_jpeg_size

    plain = [image_bytes(1, (48, 32)), image_bytes(2, (33, 90), progressive=True), image_bytes(3, (40, 40), quality=5)]
    for data in plain:
        with Image.open(io.BytesIO(data)) as image:
            assert plain_jpeg_size(data) == image.size
    exif = Image.Exif()
    exif[0x0112] = 1
    others = [
        image_bytes(4, mode="L"), image_bytes(5, mode="CMYK"), image_bytes(6, exif=exif), image_bytes(7, fmt="PNG"),
        b"\xff\xd8\xff\xc0\x00\x11garbage-in-the-frame-header", image_bytes(8)[:100], b"",
    ]  # fmt: skip
    assert [plain_jpeg_size(data) for data in others] == [None] * len(others)
    cut = image_bytes(9)[:-50]  # a plain header, but the data ends early: Pillow decides
    assert plain_jpeg_size(cut) == (32, 32)
    assert inspect_image(cut, 32).reason == "truncated"
    assert inspect_image(image_bytes(10, (8, 64)), 32).detail == "8x64 px, under min_image_size=32"
    written_as_is = Inspection(32, 32, ".jpg", None, None, "")
    assert inspect_image(image_bytes(6, exif=exif), 32) == inspect_image(image_bytes(6), 32) == written_as_is


def exif_rotated_jpeg() -> bytes:
    """A 48x32 photo whose EXIF says: turn 90 degrees clockwise to view (orientation 6), left half red."""
    image = Image.new("RGB", (48, 32), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 24, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def sixteen_bit_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def transparent_png() -> bytes:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # fully transparent black
    image.paste((0, 128, 0, 255), (0, 0, 16, 32))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ((200, 0, 0), (0, 0, 200))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def test_every_format_and_mode_becomes_an_rgb_jpeg_or_png(tmp_path):
    photos = {
        "rgb.jpg": (image_bytes(1), "rgb.jpg", ""),
        "flat.png": (image_bytes(2, fmt="PNG"), "flat.png", ""),
        "same_stem.jpg": (image_bytes(9), "same_stem.jpg", ""),
        "same_stem.png": (image_bytes(10, fmt="PNG"), "same_stem-2.png", ""),  # names stay unique per class
        "named_png.jpeg": (image_bytes(3, fmt="PNG"), "named_png.png", ""),
        "gray.jpg": (image_bytes(4, mode="L"), "gray.jpg", "converted JPEG L to RGB JPEG"),
        "cmyk.jpg": (image_bytes(5, mode="CMYK"), "cmyk.jpg", "converted JPEG CMYK to RGB JPEG"),
        "photo.webp": (image_bytes(6, fmt="WEBP"), "photo.jpg", "converted WEBP RGB to RGB JPEG"),
        "scan.bmp": (image_bytes(7, fmt="BMP"), "scan.png", "converted BMP RGB to RGB PNG"),
        "scanner.tif": (image_bytes(8, fmt="TIFF"), "scanner.png", "converted TIFF RGB to RGB PNG"),
        "anim.gif": (animated_gif(), "anim.png", "converted GIF P to RGB PNG; first of 2 frames"),
        "alpha.png": (transparent_png(), "alpha.png", "converted PNG RGBA to RGB PNG"),
        "deep.png": (sixteen_bit_png(), "deep.png", "converted PNG I;16 to RGB PNG"),
        "turned.jpg": (exif_rotated_jpeg(), "turned.jpg", "converted JPEG RGB to RGB JPEG; turned upright per EXIF"),
    }
    entries = {f"cat/{name}": data for name, (data, _, _) in photos.items()}
    entries.update(class_folders({"dog": 3}, start=100))
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries), val_fraction=0.01)
    assert prepared.skipped == {} and prepared.converted == 9
    table = manifest(prepared).set_index("path")
    for name, (_, written, detail) in photos.items():
        row = table.loc[f"cat/{name}"]
        assert (row["file"].split("/", 1)[1], row["detail"]) == (f"cat/{written}", detail), name
        with Image.open(prepared.root / row["file"]) as image:
            assert image.mode == "RGB" and image.format == ("JPEG" if written.endswith(".jpg") else "PNG"), name
    cat = {Path(file).name: prepared.root / file for file in table.loc[table["class"] == "cat", "file"]}
    with Image.open(cat["turned.jpg"]) as turned:
        assert turned.size == (32, 48)  # upright: taller than wide, red half on top
        assert turned.getpixel((16, 4))[0] > 200 and turned.getpixel((16, 44))[2] > 200
    with Image.open(cat["deep.png"]) as deep:
        assert deep.getpixel((5, 5)) == (128, 128, 128)  # scaled from 16 bits, not clipped to white
    with Image.open(cat["alpha.png"]) as alpha:
        assert alpha.getpixel((30, 5)) == (255, 255, 255) and alpha.getpixel((2, 5)) == (0, 128, 0)


def test_written_images_decode_in_tensorflow_as_rgb(tmp_path):
    from tuneflow.imaging.decoding import decode_image
    import tensorflow as tf

    entries = {
        "cat/gray.jpg": image_bytes(4, mode="L"), "cat/cmyk.jpg": image_bytes(5, mode="CMYK"),
        "cat/photo.webp": image_bytes(6, fmt="WEBP"), "cat/deep.png": sixteen_bit_png(),
        "cat/alpha.png": transparent_png(), "cat/anim.gif": animated_gif(), "dog/rgb.jpg": image_bytes(1),
        "dog/turned.jpg": exif_rotated_jpeg(), "dog/scan.bmp": image_bytes(7, fmt="BMP"),
    }  # fmt: skip
    prepared = run(tmp_path, write_zip(tmp_path / "d.zip", entries))
    files = [prepared.root / name for name in images(prepared)]
    assert len(files) == 9
    for file in files:
        assert decode_image(tf.io.read_file(str(file)), 32).shape == (32, 32, 3), file


def test_the_sample_dataset_prepares_into_the_split_layout_and_nothing_else(tiny_archive, tmp_path):
    prepared = prepare_dataset(tiny_archive, tmp_path / "run" / "dataset", DataSettings(), seed=5)
    assert prepared.layout == "food-101" and prepared.classes == ["apple_pie", "pizza", "sashimi"]
    assert prepared.counts == {"train": {c: 8 for c in prepared.classes}, "val": {c: 2 for c in prepared.classes}}
    written = listing(tmp_path / "run")
    assert len(written) == 32 and (written[0], written[-1]) == ("dataset/prepared.json", "manifest.csv")
    assert all(name.startswith("dataset/train/") or name.startswith("dataset/val/") for name in written[1:-1])
    assert_only_run_folder_written(tmp_path, tiny_archive)


# ---------------------------------------------------------------------------------------------------- manifest, reuse


def test_manifest_has_a_row_for_every_file_in_the_archive(tmp_path):
    entries = class_folders({"cat": 4, "dog": 4}, top="photos/")
    entries["photos/cat/bad.jpg"] = b"nope"
    entries["photos/notes.txt"] = b"x"
    archive = write_zip(tmp_path / "d.zip", entries)
    prepared = run(tmp_path, archive)
    table = manifest(prepared)
    assert prepared.manifest == tmp_path / "run" / "manifest.csv"
    assert list(table.columns) == [
        "path", "class", "split", "status", "reason", "detail", "size", "sha256", "width", "height", "file"
    ]  # fmt: skip
    assert sorted(table["path"]) == sorted(entries)
    kept = table.query("status == 'kept'")
    assert len(kept) == 8 and set(kept["width"].astype(int)) == set(kept["height"].astype(int)) == {32}
    for _, row in kept.iterrows():
        assert (prepared.root / row["file"]).read_bytes() == entries[row["path"]]
        assert row["size"] == len(entries[row["path"]]) and row["file"].startswith(f"{row['split']}/{row['class']}/")
    assert table.set_index("path").loc["photos/cat/bad.jpg", "status"] == "skipped"


def test_same_archive_and_settings_reuse_the_cached_preparation(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 10, "dog": 10}))
    cache = tmp_path / "prepared"
    first = prepare_dataset(archive, tmp_path / "r1" / "dataset", DataSettings(), 1, cache_dir=cache)
    built = []
    monkeypatch.setattr(prepare_module, "build_dataset", lambda *a, **k: built.append(a) or pytest.fail("rebuilt"))
    second = prepare_dataset(archive, tmp_path / "r2" / "dataset", DataSettings(), 1, cache_dir=cache)
    assert first.reused_from is None and second.reused_from is not None and built == []
    assert images(first) == images(second)
    assert (tmp_path / "r2" / "manifest.csv").read_text() == (tmp_path / "r1" / "manifest.csv").read_text()
    some = images(second)[0]
    assert os.path.samefile(second.root / some, second.reused_from / "dataset" / some)  # hard-linked, not copied
    monkeypatch.undo()
    other = prepare_dataset(archive, tmp_path / "r3" / "dataset", DataSettings(), 2, cache_dir=cache)
    assert other.reused_from is None and len(list(cache.iterdir())) == 2


def test_a_crash_leaves_no_cache_entry_and_no_dataset(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 10, "dog": 10}))
    cache = tmp_path / "prepared"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(prepare_module, "build_dataset", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(archive, tmp_path / "r1" / "dataset", DataSettings(), 1, cache_dir=cache)
    assert list(cache.iterdir()) == [] and not (tmp_path / "r1" / "dataset").exists()
    monkeypatch.undo()
    # A half-built entry from a killed process is never mistaken for a finished one.
    (cache / ".partial-deadbeef").mkdir()
    prepared = prepare_dataset(archive, tmp_path / "r2" / "dataset", DataSettings(), 1, cache_dir=cache)
    assert prepared.reused_from is None and prepared.total == 20


def test_a_resumed_run_reuses_its_finished_dataset(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 5, "dog": 5}))
    first = run(tmp_path, archive)
    monkeypatch.setattr(prepare_module, "build_dataset", lambda *a, **k: pytest.fail("prepared again"))
    again = run(tmp_path, archive)  # the same dest, as the flow passes it when resuming a run
    assert again == first and again.root == tmp_path / "run" / "dataset"
    cache = tmp_path / "prepared"
    monkeypatch.undo()
    cached = prepare_dataset(archive, tmp_path / "r2" / "dataset", DataSettings(), 0, cache_dir=cache)
    relinked = prepare_dataset(archive, tmp_path / "r3" / "dataset", DataSettings(), 0, cache_dir=cache)
    assert cached.reused_from is None and relinked.reused_from.parent == cache
    assert run(tmp_path, archive, run_name="r3") == relinked  # resuming the run that reused keeps its record
    # The run's record is its own file, not a hard link into the cache.
    assert not os.path.samefile(relinked.root / "prepared.json", relinked.reused_from / "dataset" / "prepared.json")


def test_dest_that_already_holds_other_files_is_refused(tmp_path):
    archive = write_zip(tmp_path / "d.zip", class_folders({"cat": 3, "dog": 3}))
    (tmp_path / "run" / "dataset").mkdir(parents=True)
    (tmp_path / "run" / "dataset" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists and is not an empty folder; prepare into a new run"):
        run(tmp_path, archive)
    assert listing(tmp_path / "run") == ["dataset/notes.txt"]
