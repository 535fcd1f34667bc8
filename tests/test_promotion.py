"""Promotion: a new model replaces the one in use only when at least as good on the same images, or when forced;
`current` never points at a half-written model."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from tests.records import training_record
from tuneflow.evaluation.comparison import compare_paired
from tuneflow.config import PromotionSettings, ServingSettings
from tuneflow.evaluation.evaluate import predict_folder_split
from tuneflow.training.model import CLASSES_FILE, MODEL_FILE, find_model_folder
from tuneflow.registry.versions import (
    TRAINING_PHOTOS_FILE,
    current_version,
    list_versions,
    models_dir,
    point_current_at,
    read_version_record,
    store_version,
)
from tuneflow.report.history import read_history
from tuneflow.registry.promotion import BASELINE_PREDICTIONS_FILE, Baseline, decide_promotion, photos_on_side, promote_trained_model
from tuneflow.records import EvalResult, TrainedModel

CLASSES = ["apple_pie", "pizza", "sashimi"]
# Exporting for TF Serving takes seconds of ResNet50 tracing; only the tests about serving turn it on.
NO_SERVING = ServingSettings(export_on_promotion=False)


# --- the decision rule, on numbers ---------------------------------------------------------------------------

def paired_tables(both_right: int, only_new_right: int, only_old_right: int, both_wrong: int):
    """Prediction tables of two models on the same photos with these counts in the 2x2 table."""
    new = [True] * both_right + [True] * only_new_right + [False] * only_old_right + [False] * both_wrong
    old = [True] * both_right + [False] * only_new_right + [True] * only_old_right + [False] * both_wrong
    paths = [f"val/pizza/{index}.jpg" for index in range(len(new))]
    return pd.DataFrame({"path": paths, "correct": new}), pd.DataFrame({"path": paths, "correct": old})


def decide(accuracy: float, in_use: float | None, margin: float = 0.0, force: bool = False, classes=CLASSES,
           photos: int = 100, **settings):
    """The decision for these accuracies on `photos` photos, the two models right together as often as possible."""
    baseline = None
    if classes != CLASSES:
        baseline = Baseline(version="v-old", classes=classes, accuracy=None)
    elif in_use is not None:
        new_right, old_right = round(accuracy * photos), round(in_use * photos)
        both = min(new_right, old_right)
        paired = compare_paired(*paired_tables(both, new_right - both, old_right - both, photos - max(new_right, old_right)))
        baseline = Baseline(version="v-old", classes=classes, accuracy=paired.old_accuracy, comparison=paired)
    settings = PromotionSettings(margin=margin, force=force, **settings)
    return decide_promotion("v-new", accuracy, CLASSES, baseline, settings)


def test_first_model_is_promoted():
    promoted, reason = decide(0.4, None)
    assert promoted and "no model was in use yet" in reason


def test_better_or_equal_is_promoted_worse_is_kept():
    assert decide(0.82, 0.80)[0]
    assert decide(0.80, 0.80)[0]  # at least as good
    promoted, reason = decide(0.79, 0.80)
    assert not promoted
    assert ("79.00% against 80.00% for the model in use (v-old) on the 100 validation photos it never trained on "
            "(none left out)") in reason
    assert "both right 79, only the new model 0, only the model in use 1, both wrong 20" in reason
    assert "Kept as version v-new" in reason and "promotion.force" in reason


def test_margin_demands_an_improvement_or_tolerates_a_drop():
    assert decide(0.81, 0.80, margin=0.01)[0]  # exactly one point better: 0.80 + 0.01 must not fail on rounding
    assert not decide(0.80, 0.80, margin=0.01)[0]
    assert decide(0.79, 0.80, margin=-0.01)[0]
    assert not decide(0.78, 0.80, margin=-0.01)[0]


def test_force_promotes_a_worse_model_and_says_so():
    promoted, reason = decide(0.50, 0.80, force=True)
    assert promoted and reason.startswith("forced:")


def test_other_classes_cannot_be_compared_so_only_force_promotes():
    promoted, reason = decide(0.9, None, classes=["cat", "dog"])
    assert not promoted and "knows ['cat', 'dog']" in reason and "promotion.force" in reason
    assert decide(0.9, None, classes=["cat", "dog"], force=True)[0]


def test_significance_demands_more_than_the_margin_when_asked():
    # 8 photos more right, none fewer: p = 2/2^8 = 0.0078, significant at 0.05.
    promoted, reason = decide(0.88, 0.80, require_significance=True)
    assert promoted and "McNemar exact p = 0.00781" in reason and "McNemar p < 0.05" in reason
    # 2 more right: better by the margin rule, but a coin toss could do that (p = 0.5).
    assert decide(0.82, 0.80)[0]
    promoted, reason = decide(0.82, 0.80, require_significance=True)
    assert not promoted and "McNemar exact p = 0.5" in reason and "not met" in reason


def test_mcnemar_exact_p_and_the_agresti_min_interval():
    from tuneflow.evaluation.comparison import difference_interval, mcnemar_exact_p

    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 2**10)
    assert mcnemar_exact_p(5, 1) == mcnemar_exact_p(1, 5) == pytest.approx(2 * (1 + 6) / 2**6)
    # Agresti's presidential approval survey (Categorical Data Analysis, 2nd ed., table 10.1): 794 approve twice,
    # 150 then disapprove, 86 the reverse, 570 disapprove twice; the difference 0.04 lies in (0.021, 0.059).
    low, high = difference_interval(794, 150, 86, 570)
    assert (round(low, 3), round(high, 3)) == (0.021, 0.059)
    assert difference_interval(0, 0, 0, 0) == pytest.approx((-0.98, 0.98), abs=1e-3)  # no data: nearly anything


def test_no_photo_new_to_the_model_in_use_means_no_fair_comparison():
    empty = compare_paired(pd.DataFrame({"path": ["val/a/1.jpg"], "correct": [True]}),
                           pd.DataFrame(columns=["path", "correct"]), left_out=1, left_out_reason="v-old trained on them")
    baseline = Baseline(version="v-old", classes=CLASSES, accuracy=None, comparison=empty)
    promoted, reason = decide_promotion("v-new", 1.0, CLASSES, baseline, PromotionSettings())
    assert not promoted and "cannot be compared fairly" in reason and "1 left out: v-old trained on them" in reason
    assert decide_promotion("v-new", 1.0, CLASSES, baseline, PromotionSettings(force=True))[0]


def test_margin_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="margin"):
        PromotionSettings(margin=0.8)


# --- versions and the current pointer, on files ---------------------------------------------------------------

def fake_model_folder(folder: Path, content: bytes, classes=CLASSES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(content)
    (folder / CLASSES_FILE).write_text(json.dumps(classes))
    return folder


def model_in_use(data_root: Path) -> bytes | None:
    """What a reader opening models/current/model.keras right now would get."""
    path = models_dir(data_root) / "current" / MODEL_FILE
    return path.read_bytes() if path.exists() else None


def test_store_and_point(tmp_path):
    data_root = tmp_path / "data"
    store_version(fake_model_folder(tmp_path / "run-a", b"model A"), data_root, "v1", {"accuracy": 0.5})
    assert current_version(data_root) is None  # stored is not in use
    point_current_at(data_root, "v1")
    assert current_version(data_root) == "v1" and model_in_use(data_root) == b"model A"
    assert os.readlink(models_dir(data_root) / "current") == "v1"  # relative: the folder can move
    assert json.loads((models_dir(data_root) / "v1" / "version.json").read_text())["accuracy"] == 0.5
    with pytest.raises(FileExistsError, match="never overwritten"):
        store_version(tmp_path / "run-a", data_root, "v1", {})
    with pytest.raises(FileNotFoundError, match="no complete model version 'v9'.*versions: \\['v1'\\]"):
        point_current_at(data_root, "v9")


def test_current_is_complete_at_every_step_of_storing_and_switching(tmp_path, monkeypatch):
    """Check the invariant before every file operation storing version 2 and switching to it makes."""
    data_root = tmp_path / "data"
    store_version(fake_model_folder(tmp_path / "run-a", b"model A" * 1000), data_root, "v1", {})
    point_current_at(data_root, "v1")
    complete = {b"model A" * 1000, b"model B" * 1000}
    seen = []

    def check(operation):
        def checked(*args, **kwargs):
            in_use = model_in_use(data_root)
            assert in_use in complete, f"current held a partial model before {operation.__name__}{args}"
            assert (models_dir(data_root) / "current" / CLASSES_FILE).is_file()
            seen.append(in_use)
            return operation(*args, **kwargs)
        return checked

    monkeypatch.setattr(os, "link", check(os.link))
    monkeypatch.setattr(os, "replace", check(os.replace))
    monkeypatch.setattr(os, "symlink", check(os.symlink))
    monkeypatch.setattr(Path, "rename", check(Path.rename))
    store_version(fake_model_folder(tmp_path / "run-b", b"model B" * 1000), data_root, "v2", {})
    point_current_at(data_root, "v2")
    monkeypatch.undo()
    assert len(seen) >= 5  # two links, the staging rename, the symlink, the replace
    assert model_in_use(data_root) == b"model B" * 1000


def test_storing_failing_half_way_leaves_current_and_no_half_version(tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    store_version(fake_model_folder(tmp_path / "run-a", b"model A"), data_root, "v1", {})
    point_current_at(data_root, "v1")
    real_link = os.link

    def disk_full(source, target, **kwargs):
        if Path(source).name == CLASSES_FILE:  # model.keras is linked already: half a version in staging
            raise OSError(28, "No space left on device")
        return real_link(source, target, **kwargs)

    monkeypatch.setattr(os, "link", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store_version(fake_model_folder(tmp_path / "run-b", b"model B"), data_root, "v2", {})
    assert current_version(data_root) == "v1" and model_in_use(data_root) == b"model A"
    assert list_versions(data_root) == ["v1"]
    assert sorted(p.name for p in models_dir(data_root).iterdir()) == ["current", "v1"]  # no staging left over


def test_a_version_is_a_hard_link_to_the_run_model_not_a_second_copy(tmp_path):
    """95 MB a version at ResNet50's size, every week: the version and the run share one copy on disk."""
    data_root = tmp_path / "data"
    run = fake_model_folder(data_root / "runs" / "run-a", b"model A" * 1000)
    told = []
    version = store_version(run, data_root, "v1", {}, notify=told.append)
    for name in (MODEL_FILE, CLASSES_FILE):
        assert (version / name).stat().st_ino == (run / name).stat().st_ino, name
        assert (version / name).stat().st_nlink == 2
    assert told == []  # nothing to say: one filesystem
    # The run saving its model again (a resumed run) replaces its file; the version keeps the bytes it stored.
    from tuneflow.atomic_files import write_bytes_atomically

    write_bytes_atomically(run / MODEL_FILE, b"model A, trained further")
    assert (version / MODEL_FILE).read_bytes() == b"model A" * 1000


def test_a_model_on_another_filesystem_is_copied_and_the_log_says_so(tmp_path, monkeypatch):
    memory = Path("/dev/shm")
    if memory.is_dir() and memory.stat().st_dev != tmp_path.stat().st_dev:
        other_filesystem = Path(tempfile.mkdtemp(dir=memory))  # a real second filesystem, as Linux mounts /dev/shm
    else:
        # No second filesystem here (a container without /dev/shm): the kernel's answer to a hard link across
        # filesystems, EXDEV, given by os.link itself.
        other_filesystem = Path(tempfile.mkdtemp(dir=tmp_path))

        def link_across_filesystems(source, target):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(source))

        monkeypatch.setattr("tuneflow.registry.versions.os.link", link_across_filesystems)
    data_root = tmp_path / "data"
    run = fake_model_folder(other_filesystem / "run-a", b"model A" * 1000)
    try:
        told = []
        version = store_version(run, data_root, "v1", {}, notify=told.append)
        assert (version / MODEL_FILE).read_bytes() == b"model A" * 1000
        assert (version / MODEL_FILE).stat().st_nlink == 1
        assert any(f"{run / MODEL_FILE} is on another filesystem" in line and "copied it" in line for line in told)
    finally:
        shutil.rmtree(run.parent)


def test_dangling_pointer_is_explained(tmp_path):
    data_root = tmp_path / "data"
    models_dir(data_root).mkdir(parents=True)
    os.symlink("gone", models_dir(data_root) / "current")
    with pytest.raises(FileNotFoundError, match="points at 'gone', which holds no model.keras.*ln -sfn"):
        current_version(data_root)


# --- the promote step with real models ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def load_each_model_once():
    """Every run here holds a copy of the same model file: deserialise it once, not once per re-evaluation.

    Loading ResNet50 (and tracing its predict function) takes seconds on our CPUs; these tests are about what
    promotion does with the scores. Each re-evaluation still predicts the run's validation images.
    """
    evaluate = sys.modules[predict_folder_split.__module__]
    real_load = evaluate.load_classifier
    loaded: dict[tuple[str, str], tuple] = {}

    def load_once(folder):
        folder = find_model_folder(folder)
        key = (hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest(), (folder / CLASSES_FILE).read_text())
        if key not in loaded:
            loaded[key] = real_load(folder)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "load_classifier", load_once)
        yield loaded


@pytest.fixture(scope="module")
def trained_once(tiny_dataset, tiny_model, load_each_model_once, tmp_path_factory):
    """A tiny untrained classifier and the validation split it is scored on (promotion compares, not trains)."""
    predictions = predict_folder_split(tiny_model, tiny_dataset.root, tmp_path_factory.mktemp("decoded"))
    return tiny_dataset, tiny_model, float(predictions["correct"].mean()), predictions


def candidate(trained_once, run_dir: Path) -> tuple[TrainedModel, EvalResult]:
    """A run whose model is a copy of the fixture's, so it scores exactly what the model in use scores."""
    _, model_dir, accuracy, predictions = trained_once
    run_dir.mkdir(parents=True)
    for name in (MODEL_FILE, CLASSES_FILE):
        shutil.copy2(model_dir / name, run_dir / name)
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    trained = training_record(model_path=run_dir / MODEL_FILE, classes=CLASSES, history_path=run_dir / "history.csv",
                              epochs_run=1, train_images=24, seconds=1.0)
    evaluation = EvalResult(accuracy=accuracy, num_images=6, predictions_path=run_dir / "predictions.csv",
                            metrics_path=run_dir / "metrics.json")
    return trained, evaluation


def candidate_again(trained_once, run_dir: Path) -> tuple:
    """The records of a run whose folder already exists (as after resume_run_id)."""
    shutil.rmtree(run_dir)
    return candidate(trained_once, run_dir)


def promote_run(trained_once, data_root: Path, name: str, serving: ServingSettings = NO_SERVING, **settings):
    dataset = trained_once[0]
    trained, evaluation = candidate(trained_once, data_root / "runs" / name)
    return promote_trained_model(trained, evaluation, dataset, PromotionSettings(**settings), serving, data_root,
                                 data_root / "runs" / name)


@pytest.mark.slow
def test_promote_step_both_ways_and_forced(trained_once, tmp_path):
    data_root = tmp_path / "data"
    first = promote_run(trained_once, data_root, "run-1")
    assert first.promoted and first.baseline is None and current_version(data_root) == "run-1"

    # The same model again: exactly as good on the same images, so margin 0 promotes it.
    equal = promote_run(trained_once, data_root, "run-2")
    assert equal.baseline.version == "run-1" and equal.baseline.accuracy == equal.accuracy == trained_once[2]
    assert equal.promoted and current_version(data_root) == "run-2"
    assert (data_root / "runs" / "run-2" / BASELINE_PREDICTIONS_FILE).is_file()  # the re-evaluation is on disk
    # Each version carries what it trained on, so the run folder can go: the SHA-256 of every training photo.
    training_photos = pd.read_csv(models_dir(data_root) / "run-1" / TRAINING_PHOTOS_FILE, dtype=str)
    assert sorted(training_photos["file"]) == sorted(photos_on_side(trained_once[0], "train")["file"])
    assert len(training_photos) == 24 and training_photos["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert read_version_record(data_root, "run-1")["training_photos"] == 24

    # Demanding one point more: kept, not promoted.
    kept = promote_run(trained_once, data_root, "run-3", margin=0.01)
    assert not kept.promoted and kept.current_version == "run-2" and current_version(data_root) == "run-2"
    assert "run-3" in list_versions(data_root) and "Kept as version run-3" in kept.reason

    forced = promote_run(trained_once, data_root, "run-4", margin=0.01, force=True)
    assert forced.promoted and forced.reason.startswith("forced:") and current_version(data_root) == "run-4"
    assert list_versions(data_root) == ["run-1", "run-2", "run-3", "run-4"]

    # run-4 resumed after an interruption: its stored version is reused, and it stays current.
    resumed = promote_trained_model(*candidate_again(trained_once, data_root / "runs" / "run-4"), trained_once[0],
                                    PromotionSettings(), NO_SERVING, data_root, data_root / "runs" / "run-4")
    assert resumed.promoted and resumed.baseline.version == "run-4" and current_version(data_root) == "run-4"
    assert list_versions(data_root) == ["run-1", "run-2", "run-3", "run-4"]
    # Each version records what its run decided, for the history across retrainings (kept when run-4 resumed).
    history = read_history(data_root)
    assert [(row.version, row.promoted, row.in_use) for row in history] == [
        ("run-1", True, False), ("run-2", True, False), ("run-3", False, False), ("run-4", True, True)]
    assert all(row.validation_photos == 6 and row.training_photos == 24 for row in history)


@pytest.mark.slow
def test_promote_step_does_not_compare_models_with_other_classes(trained_once, tmp_path):
    data_root = tmp_path / "data"
    fake_model_folder(tmp_path / "old", b"an old model", classes=["cat", "dog"])
    store_version(tmp_path / "old", data_root, "run-0", {})
    point_current_at(data_root, "run-0")
    kept = promote_run(trained_once, data_root, "run-1")
    assert not kept.promoted and kept.baseline.accuracy is None and current_version(data_root) == "run-0"
    assert "knows ['cat', 'dog']" in kept.reason


def train_on(data_root: Path, version: str, files: list[str], dataset) -> None:
    """Mark a stored version as having trained on these files of the dataset (as its manifest would say)."""
    photos = photos_on_side(dataset, "val").set_index("file").loc[files].reset_index()
    photos[["sha256", "class", "file"]].to_csv(models_dir(data_root) / version / TRAINING_PHOTOS_FILE, index=False)


@pytest.mark.slow
def test_the_model_in_use_is_graded_only_on_photos_it_never_trained_on(trained_once, tmp_path):
    dataset = trained_once[0]
    data_root = tmp_path / "data"
    promote_run(trained_once, data_root, "run-1")
    # As after a reshuffle: two of this run's validation photos were in run-1's training set.
    memorised = photos_on_side(dataset, "val")["file"].tolist()[:2]
    train_on(data_root, "run-1", memorised, dataset)

    second = promote_run(trained_once, data_root, "run-2")
    in_use = pd.read_csv(data_root / "runs" / "run-2" / BASELINE_PREDICTIONS_FILE)
    assert len(in_use) == 4 and not set(in_use["path"]) & set(memorised)
    paired = second.baseline.comparison
    assert (paired.compared, paired.left_out, paired.left_out_reason) == (4, 2, "run-1 trained on them")
    assert paired.both_right + paired.only_new_right + paired.only_old_right + paired.both_wrong == 4
    assert "on the 4 validation photos it never trained on (2 left out: run-1 trained on them)" in second.reason
    metrics = json.loads((data_root / "runs" / "run-2" / "metrics.json").read_text())
    assert metrics["promotion"]["compared_with"] == "run-1"
    assert metrics["promotion"]["comparison"]["compared"] == 4 and metrics["promotion"]["comparison"]["left_out"] == 2


def promote_in_another_process(trained_once, data_root: Path, name: str, start):
    """What a run's promote step does, in its own process (a second worker finishing at the same moment)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as another worker process would be
    dataset = trained_once[0]
    trained, evaluation = candidate(trained_once, data_root / "runs" / name)
    results = context.Queue()
    process = context.Process(
        target=promote_and_report,
        args=(trained, evaluation, dataset, data_root, data_root / "runs" / name, start, results),
    )
    process.start()
    return process, results


def promote_and_report(trained, evaluation, dataset, data_root, run_dir, start, results) -> None:
    start.wait()  # both processes reach their promote step together
    decision = promote_trained_model(trained, evaluation, dataset, PromotionSettings(force=True), NO_SERVING,
                                     data_root, run_dir, notify=lambda message: None)
    results.put((decision.baseline.version, decision.reason, decision.promoted))


@pytest.mark.slow
def test_two_runs_promoting_at_once_compare_in_turn(trained_once, tmp_path):
    """Without the lock both would re-score run-0 (scoring takes a second or two) and both switch `current`, the
    second never having seen the first. With it, whichever goes second compares itself with the first."""
    import multiprocessing

    data_root = tmp_path / "data"
    promote_run(trained_once, data_root, "run-0")
    start = multiprocessing.get_context("spawn").Barrier(2)
    started = [promote_in_another_process(trained_once, data_root, name, start) for name in ("run-a", "run-b")]
    outcomes = {}
    for (process, results), name in zip(started, ("run-a", "run-b")):
        outcomes[name] = results.get(timeout=300)
        process.join(timeout=60)
        assert process.exitcode == 0
    compared_with = {name: outcome[0] for name, outcome in outcomes.items()}
    first, second = sorted(compared_with, key=lambda name: compared_with[name] != "run-0")
    assert compared_with == {first: "run-0", second: first}, compared_with
    assert f"for the model in use ({first})" in outcomes[second][1]
    assert current_version(data_root) == second and list_versions(data_root) == ["run-0", "run-a", "run-b"]


@pytest.mark.slow
def test_a_failed_serving_export_leaves_current_and_serving_as_they_were_and_a_kept_model_exports_nothing(
    trained_once, tmp_path, monkeypatch
):
    """The serving export is written before `current` switches: if it fails, the run fails and nothing changed.
    (A successful one is checked end to end in test_flow.py; what it writes in test_export.py.)"""
    import tuneflow.registry.serving
    from tuneflow.registry.serving import list_serving_versions

    data_root = tmp_path / "data"
    serving = ServingSettings()
    promote_run(trained_once, data_root, "run-1")  # in use, exported by hand below
    kept = promote_run(trained_once, data_root, "run-2", serving=serving, margin=0.01)
    assert not kept.promoted and kept.serving_version_dir is None and not (data_root / "serving").exists()

    def disk_full(model, classes, folder):
        (folder / "saved_model.pb").parent.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"half a graph")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tuneflow.registry.serving, "write_savedmodel", disk_full)
    with pytest.raises(OSError, match="No space left"):
        promote_run(trained_once, data_root, "run-3", serving=serving)
    assert current_version(data_root) == "run-1" and list_serving_versions(data_root, serving) == []
    assert [p.name for p in (data_root / "serving").iterdir()] == []  # no half-written version left anywhere
