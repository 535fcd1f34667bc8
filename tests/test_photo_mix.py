"""The benchmarks' generated photo sets: a set asked for is exactly that set, whatever was generated there before."""

from __future__ import annotations

from pathlib import Path

from tuneflow.dataset.photo_mix import FOOD101_REAL_MIX, write_photo_mix


def listing(root: Path) -> dict[str, list[str]]:
    return {folder.name: sorted(file.name for file in folder.iterdir()) for folder in sorted((root / "train").iterdir())}


def test_a_smaller_set_after_a_larger_one_holds_only_its_own_photos(tmp_path):
    root = tmp_path / "photos"
    write_photo_mix(root, ("apple_pie", "sashimi"), 3, FOOD101_REAL_MIX)
    three = listing(root)
    assert [len(files) for files in three.values()] == [3, 3]

    # Before: the marker of an earlier 2-per-class run said "complete", and the benchmark timed 3 photos a class.
    write_photo_mix(root, ("apple_pie", "sashimi"), 2, FOOD101_REAL_MIX)
    assert [len(files) for files in listing(root).values()] == [2, 2]

    write_photo_mix(root, ("apple_pie",), 2, FOOD101_REAL_MIX)
    assert list(listing(root)) == ["apple_pie"]

    # Kept between runs: asked again for the same set, the files are not written again.
    mtimes = {file: file.stat().st_mtime_ns for file in root.rglob("*.*")}
    write_photo_mix(root, ("apple_pie",), 2, FOOD101_REAL_MIX)
    assert {file: file.stat().st_mtime_ns for file in root.rglob("*.*")} == mtimes
