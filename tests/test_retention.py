"""Retention: the newest finished runs keep their heavy files, older ones only their results; unused caches go."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tuneflow.cli import main
from tuneflow.runs.retention import PRUNED_RECORD, list_runs, prune_heavy_files

SMALL_FILES = ("model.keras", "report.md", "report.html", "predictions.csv", "metrics.json", "manifest.csv",
               "history.csv", "config.json")


def make_run(data_root: Path, run_id: str, finished: bool = True, cache_entry: Path | None = None,
             archive: Path | None = None) -> Path:
    """A run folder as a run leaves it: results, and heavy parts holding a megabyte each."""
    run_dir = data_root / "runs" / run_id
    for part in ("dataset/train/pizza", "checkpoints", "cache/train", "workers/1/checkpoints"):
        (run_dir / part).mkdir(parents=True)
        (run_dir / part / "blob").write_bytes(b"x" * 1_000_000)
    (run_dir / "dataset" / "prepared.json").write_text(json.dumps({"cache_entry": str(cache_entry) if cache_entry else None}))
    for name in SMALL_FILES:
        if name != "report.md" or finished:
            (run_dir / name).write_text("{}" if name.endswith(".json") else "x")
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "promotion": {"promoted": True}}))
    if archive is not None:
        (run_dir / "archive.json").write_text(json.dumps({"path": str(archive)}))
    return run_dir


def cached_folder(path: Path, age_s: float = 7200) -> Path:
    path.mkdir(parents=True)
    (path / "blob").write_bytes(b"y" * 500_000)
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    used_entry = cached_folder(root / "cache" / "prepared" / "used")
    cached_folder(root / "cache" / "prepared" / "unused")
    cached_folder(root / "cache" / "prepared" / "just-made", age_s=10)  # a run may be about to link it
    old_download = cached_folder(root / "cache" / "drive" / "FILE" / "md5-old", age_s=9000)
    cached_folder(root / "cache" / "drive" / "FILE" / "md5-older", age_s=10000)
    cached_folder(root / "cache" / "drive" / "FILE" / "md5-new", age_s=100)
    make_run(root, "20261101-030000-aaaaaa")
    make_run(root, "20261108-030000-bbbbbb", finished=False)  # crashed: it may be resumed
    make_run(root, "20261115-030000-cccccc", archive=old_download / "dataset.zip")
    make_run(root, "20261122-030000-dddddd", cache_entry=used_entry)
    return root


def remaining(run_dir: Path) -> set[str]:
    return {path.name for path in run_dir.iterdir()}


def test_older_finished_runs_lose_only_their_heavy_files(data_root):
    runs = data_root / "runs"
    removed = prune_heavy_files(data_root, keep=2)
    oldest = runs / "20261101-030000-aaaaaa"
    assert remaining(oldest) == {*SMALL_FILES, PRUNED_RECORD}
    assert json.loads((oldest / PRUNED_RECORD).read_text())["removed"] == ["dataset", "cache", "checkpoints", "workers"]
    for kept in ("20261115-030000-cccccc", "20261122-030000-dddddd"):
        assert {"dataset", "cache", "workers"} <= remaining(runs / kept), kept
        assert not (runs / kept / "pruned.json").exists()
    unfinished = runs / "20261108-030000-bbbbbb"
    assert {"dataset", "checkpoints", "cache", "workers"} <= remaining(unfinished)
    assert (unfinished / "workers" / "1" / "checkpoints" / "blob").is_file()
    # The cached preparation a kept run links to stays, and so does one too new to judge; the other goes.
    assert sorted(p.name for p in (data_root / "cache" / "prepared").iterdir()) == ["just-made", "used"]
    # Drive: the download a kept run trained on and the newest stay.
    assert sorted(p.name for p in (data_root / "cache" / "drive" / "FILE").iterdir()) == ["md5-new", "md5-old"]
    assert {item.path.name for item in removed} == {"dataset", "cache", "checkpoints", "workers", "unused", "md5-older"}
    # 4 heavy parts, 2 x 2 checkpoint folders of the kept finished runs, 2 caches, a prepared.json
    assert 9_000_000 <= sum(item.bytes for item in removed) < 9_001_000


def test_a_finished_run_gives_back_its_checkpoints_at_once_and_a_failed_one_keeps_them(data_root):
    """Checkpoints exist only for resuming (about 570 MB a run at 224 px): a finished run never resumes, so even
    the runs whose heavy files stay lose them; an unfinished run (failed, or still training) keeps them."""
    runs = data_root / "runs"
    removed = prune_heavy_files(data_root, keep=10)  # every run keeps its dataset and decoded photos
    for finished in ("20261101-030000-aaaaaa", "20261115-030000-cccccc", "20261122-030000-dddddd"):
        assert not (runs / finished / "checkpoints").exists() and not (runs / finished / "workers" / "1" / "checkpoints").exists()
        assert {"dataset", "cache", "workers"} <= remaining(runs / finished) and "pruned.json" not in remaining(runs / finished)
    unfinished = runs / "20261108-030000-bbbbbb"
    assert (unfinished / "checkpoints" / "blob").is_file() and (unfinished / "workers" / "1" / "checkpoints" / "blob").is_file()
    assert sorted(str(item.path.relative_to(runs)) for item in removed if item.path.name == "checkpoints") == [
        f"{run}/{folder}" for run in ("20261101-030000-aaaaaa", "20261115-030000-cccccc", "20261122-030000-dddddd")
        for folder in ("checkpoints", "workers/1/checkpoints")]


def test_a_dry_run_removes_nothing_and_keep_zero_prunes_every_finished_run(data_root):
    before = sorted(str(p) for p in data_root.rglob("*"))
    would = prune_heavy_files(data_root, keep=0, dry_run=True)
    assert sorted(str(p) for p in data_root.rglob("*")) == before
    assert len([item for item in would if item.path.name == "dataset"]) == 3  # the unfinished run is spared
    assert {"used", "unused"} <= {item.path.name for item in would}  # no kept run would link "used" any more
    prune_heavy_files(data_root, keep=0)
    assert "dataset" in remaining(data_root / "runs" / "20261108-030000-bbbbbb")
    with pytest.raises(ValueError, match="keep must be 0 or more"):
        prune_heavy_files(data_root, keep=-1)


def test_runs_command_lists_and_prunes(data_root, capsys):
    assert main(["runs", "--data-root", str(data_root)]) == 0
    listing = capsys.readouterr().out
    assert "20261108-030000-bbbbbb   unfinished" in listing and "75.00%" in listing and "4 run(s)" in listing
    assert main(["runs", "prune", "--keep", "2", "--dry-run", "--data-root", str(data_root)]) == 0
    assert "would remove 10 folder(s)" in capsys.readouterr().out
    assert "dataset" in remaining(data_root / "runs" / "20261101-030000-aaaaaa")
    assert main(["runs", "prune", "--keep", "2", "--data-root", str(data_root)]) == 0
    # The oldest run's four heavy parts, the two newer finished runs' checkpoints (theirs and worker 1's), the
    # unused preparation, the older Drive download.
    assert "removed 10 folder(s)" in capsys.readouterr().out
    assert [run.pruned for run in list_runs(data_root)] == [True, False, False, False]


def decoded_photo(store: Path, digest: str, last_used: str) -> Path:
    file = store / digest[:2] / f"{digest}.tensor"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"p" * 3_000)
    used = datetime.fromisoformat(last_used).timestamp()
    os.utime(file, (used, used))
    return file


def test_decoded_photos_go_when_no_run_that_keeps_its_dataset_used_them(data_root):
    """Training marks each decoded photo it uses (its modification time); with keep=2 the oldest run that keeps
    its dataset is the unfinished one of 2026-11-08, so what no run touched since then goes."""
    decoded = data_root / "cache" / "decoded"
    store, other_size = decoded / "224px-abc", decoded / "96px-abc"
    used = decoded_photo(store, "aa" + "1" * 62, "2026-11-10T00:00:00+00:00")
    unused = decoded_photo(store, "bb" + "2" * 62, "2026-11-05T00:00:00+00:00")
    older_size = decoded_photo(other_size, "cc" + "3" * 62, "2026-11-01T00:00:00+00:00")
    stale, live = store / ".staging-1-dead", store / ".staging-2-live"
    for staging in (stale, live):
        staging.mkdir()
        (staging / "half.tensor").write_bytes(b"h" * 1_000)
    os.utime(stale, (time.time() - 2 * 86400,) * 2)

    would = prune_heavy_files(data_root, keep=2, dry_run=True)
    assert used.exists() and unused.exists() and stale.exists()
    removed = prune_heavy_files(data_root, keep=2)
    assert {(item.path, item.bytes) for item in removed} >= {(store, 4_000), (other_size, 3_000)}
    assert {item.path for item in would} == {item.path for item in removed}
    assert used.exists() and live.exists()
    assert not unused.exists() and not unused.parent.exists() and not stale.exists() and not other_size.exists()
    part = next(item.part for item in removed if item.path == store)
    assert part == "1 decoded photo(s) no kept run used, 1 stale staging folder(s); 1 photo(s) stay"
    # No run keeps its dataset any more (the unfinished one is gone too): only what was used within the hour stays.
    shutil.rmtree(data_root / "runs" / "20261108-030000-bbbbbb")
    os.utime(live, (time.time() - 2 * 86400,) * 2)
    fresh = decoded_photo(store, "dd" + "4" * 62, datetime.now(timezone.utc).isoformat())
    prune_heavy_files(data_root, keep=0)
    assert not used.exists() and fresh.exists() and not live.exists()
