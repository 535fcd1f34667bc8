"""The serving folder TF Serving watches: numbered versions that only ever appear whole, the newest kept.

These tests publish staged folders made by hand, so they run in milliseconds; the SavedModel a promotion writes
into them is checked in test_export.py (its contents) and test_flow.py (a promoted run's, end to end).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneflow.config import ServingSettings
from tuneflow.registry.serving import (
    SOURCE_FILE,
    list_serving_versions,
    publish_serving_version,
    serving_dir,
    serving_source,
    stage_serving_version,
)

SETTINGS = ServingSettings(serving_name="dishes", keep_serving_versions=2)


def staged_by_hand(data_root: Path, model_version: str) -> Path:
    """What stage_serving_version leaves: a whole SavedModel folder outside the watched one."""
    staged = data_root / "serving" / f".incoming-{model_version}"
    (staged / "variables").mkdir(parents=True)
    (staged / "saved_model.pb").write_bytes(b"graph of " + model_version.encode())
    (staged / "variables" / "variables.index").write_bytes(b"index")
    (staged / SOURCE_FILE).parent.mkdir()
    (staged / SOURCE_FILE).write_text(json.dumps({"model_version": model_version, "classes": ["a", "b"]}))
    return staged


def whole_versions_only(data_root: Path) -> list[int]:
    """The versions TF Serving would see right now, each checked to be complete."""
    folder = serving_dir(data_root, SETTINGS)
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert all(name.isdigit() for name in names), names  # nothing else ever sits where TF Serving looks
    for name in names:
        assert (folder / name / "saved_model.pb").is_file() and (folder / name / "variables").is_dir()
        assert serving_source(folder / name)["model_version"]
    return [int(name) for name in names]


def test_each_publication_is_the_next_version_and_the_newest_are_kept(tmp_path):
    data_root = tmp_path / "data"
    assert list_serving_versions(data_root, SETTINGS) == []
    for number, model_version in enumerate(["run-a", "run-b", "run-c"], start=1):
        published = publish_serving_version(staged_by_hand(data_root, model_version), data_root, SETTINGS)
        assert published == data_root / "serving" / "dishes" / str(number)
        assert serving_source(published)["model_version"] == model_version
    assert list_serving_versions(data_root, SETTINGS) == [2, 3]  # keep_serving_versions=2
    assert sorted(p.name for p in (data_root / "serving").iterdir()) == ["dishes"]  # nothing staged or retired left
    # Numbers keep growing after retention: TF Serving serves the highest, so a new model must always be higher.
    assert publish_serving_version(staged_by_hand(data_root, "run-d"), data_root, SETTINGS).name == "4"


def test_tf_serving_never_sees_a_partial_version(tmp_path, monkeypatch):
    """Check the watched folder before every rename and deletion that publishing and retiring make."""
    data_root = tmp_path / "data"
    seen = []

    def check(operation):
        def checked(*args, **kwargs):
            seen.append(whole_versions_only(data_root))
            return operation(*args, **kwargs)
        return checked

    monkeypatch.setattr(Path, "rename", check(Path.rename))
    monkeypatch.setattr(shutil, "rmtree", check(shutil.rmtree))
    for model_version in ["run-a", "run-b", "run-c"]:
        publish_serving_version(staged_by_hand(data_root, model_version), data_root, SETTINGS)
    monkeypatch.undo()
    assert seen == [[], [1], [1, 2], [1, 2, 3], [2, 3]]  # 3 renames into place, 1 rename out, 1 deletion
    assert whole_versions_only(data_root) == [2, 3]


def test_the_model_already_served_is_not_exported_again(tmp_path):
    """A resumed run promotes the model it stored before its interruption once more: nothing new to serve."""
    data_root = tmp_path / "data"
    publish_serving_version(staged_by_hand(data_root, "run-a"), data_root, SETTINGS)
    # No model folder is needed: the newest version already holds run-a, so nothing is loaded or written.
    assert stage_serving_version(tmp_path / "no-model-here", "run-a", data_root, SETTINGS) is None
    with pytest.raises(FileNotFoundError, match="no model.keras"):
        stage_serving_version(tmp_path / "no-model-here", "run-b", data_root, SETTINGS)
    assert sorted(p.name for p in (data_root / "serving").iterdir()) == ["dishes"]  # the failed staging is gone


def test_a_serving_name_tf_serving_cannot_use_is_refused():
    with pytest.raises(ValueError, match="serving_name"):
        ServingSettings(serving_name="../elsewhere")
