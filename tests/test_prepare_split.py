"""The train/val split: stratified, exact counts, deterministic for a seed; extraction into the split layout."""

from __future__ import annotations

import zipfile

import pytest

from tasks.prepare import extract_split, list_images_by_class, select_classes, split_files
from tuneflow.config import DataSettings
from tasks.prepare import prepare_dataset


def food101_like(classes: dict[str, int]) -> dict[str, list[str]]:
    return {name: [f"food-101/images/{name}/{i}.jpg" for i in range(count)] for name, count in classes.items()}


def test_food101_counts_split_exactly_800_200():
    split = split_files(food101_like({"apple_pie": 1000, "pizza": 1000}), val_fraction=0.2, seed=1)
    assert {name: len(files) for name, files in split.train.items()} == {"apple_pie": 800, "pizza": 800}
    assert {name: len(files) for name, files in split.val.items()} == {"apple_pie": 200, "pizza": 200}


def test_uneven_class_rounds_to_the_nearest_image():
    split = split_files(food101_like({"a": 999, "b": 7}), val_fraction=0.2, seed=1)
    assert (len(split.train["a"]), len(split.val["a"])) == (799, 200)
    assert (len(split.train["b"]), len(split.val["b"])) == (6, 1)


def test_same_seed_same_split_other_seed_other_split():
    files = food101_like({"a": 50, "b": 50})
    assert split_files(files, 0.2, seed=7) == split_files(files, 0.2, seed=7)
    assert split_files(files, 0.2, seed=7).val != split_files(files, 0.2, seed=8).val


def test_no_file_on_both_sides_and_none_lost():
    files = food101_like({"a": 30, "b": 20})
    split = split_files(files, 0.3, seed=3)
    for name in files:
        assert not set(split.train[name]) & set(split.val[name])
        assert sorted(split.train[name] + split.val[name]) == sorted(files[name])


def test_class_with_one_image_names_itself():
    with pytest.raises(ValueError, match="class folder 'b' has 1 image; need at least 2"):
        split_files(food101_like({"a": 10, "b": 1}), 0.2, seed=0)


def test_noise_and_non_images_are_not_classes(tmp_path):
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ["dataset/cat/1.jpg", "dataset/cat/2.JPG", "dataset/dog/1.png", "dataset/dog/2.jpeg",
                     "__MACOSX/dataset/cat/._1.jpg", "dataset/cat/.DS_Store", "dataset/readme.txt"]:
            z.writestr(name, b"x")
    assert list_images_by_class(archive) == {
        "cat": ["dataset/cat/1.jpg", "dataset/cat/2.JPG"],
        "dog": ["dataset/dog/1.png", "dataset/dog/2.jpeg"],
    }


def test_empty_archive_explains_the_expected_layout():
    with pytest.raises(ValueError, match="no images in class folders; expected e.g. food-101/images/<class>"):
        select_classes({}, None)


def test_extraction_writes_the_split_layout_and_nothing_else(tiny_archive, tmp_path):
    dataset = prepare_dataset(tiny_archive, tmp_path / "run" / "dataset", DataSettings(), seed=5)
    assert dataset.classes == ["apple_pie", "pizza", "sashimi"]
    assert dataset.counts == {"train": {c: 8 for c in dataset.classes}, "val": {c: 2 for c in dataset.classes}}
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jpg"))
    assert len(written) == 30 and all(str(p).startswith("run/dataset/") for p in written)
    with pytest.raises(FileExistsError, match="already exists"):
        extract_split(tiny_archive, split_files(list_images_by_class(tiny_archive), 0.2, 5), dataset.root)
