"""Write-then-rename: a reader finds the old file or the whole new one; a failed write leaves nothing behind."""

from __future__ import annotations

import pytest

from tuneflow.atomic_files import atomic_destination, staged_folder, write_json_atomically


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_json_atomically(tmp_path / "state.json", {"epochs_done": 3})
    with pytest.raises(OSError), atomic_destination(target) as temporary:
        temporary.write_text('{"epochs_do')
        raise OSError("disk full")
    assert target.read_text() == '{\n  "epochs_done": 3\n}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


def test_the_temporary_keeps_the_suffix_a_writer_insists_on(tmp_path):
    # Keras saves only to names ending in .keras / .weights.h5; the temporary must end the same way.
    with atomic_destination(tmp_path / "epoch-0003.weights.h5") as temporary:
        assert temporary.name.endswith(".epoch-0003.weights.h5") and temporary.name.startswith(".")
        temporary.write_bytes(b"weights")
    assert (tmp_path / "epoch-0003.weights.h5").read_bytes() == b"weights"


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "export") as staging:
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "dataset").mkdir()  # an empty folder the caller made is replaced
    with staged_folder(tmp_path / "dataset") as staging:
        (staging / "train").mkdir()
        assert not (tmp_path / "dataset" / "train").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["dataset"]
    assert (tmp_path / "dataset" / "train").is_dir()
