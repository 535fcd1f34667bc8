"""Model versions under <data_root>/models/ and the `current` pointer to the one in use.

    models/<version>/model.keras, classes.json, version.json    one folder per trained model, never changed
    models/current -> <version>                                 the model `tuneflow predict current` and serving use

A version folder appears complete or not at all: it is written under a hidden staging name, flushed to disk and
renamed into place. `current` is a relative symlink replaced with rename(2) (os.replace of a freshly made
symlink), which POSIX makes atomic: a reader opening models/current/model.keras gets the old model or the new
one, never a mix and never nothing. A symlink rather than a pointer file, because every tool can then open
models/current/model.keras without knowing about tuneflow. (Windows would need a pointer file: symlinks there
need extra privileges. Our workers run Linux.)

`promote_trained_model` is the promote step itself (the promote task in tasks/promote.py calls it): re-score the
model in use on the new validation images, store the new model as a version, and point `current` at it when
`decide_promotion` says it is at least as good.
"""

from __future__ import annotations

import filecmp
import json
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from tuneflow.config import PromotionSettings
from tuneflow.evaluation import predict_folder_split
from tuneflow.metrics import compute_metrics
from tuneflow.model import CLASSES_FILE, MODEL_FILE, load_classes
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel

MODELS_FOLDER = "models"
CURRENT_POINTER = "current"
VERSION_FILE = "version.json"
# Two accuracies on the same images differ by a multiple of 1/n; this only absorbs float rounding (0.8 + 0.01).
COMPARISON_TOLERANCE = 1e-9
# The model in use, re-scored on this run's validation images, next to the new model's predictions.csv.
BASELINE_PREDICTIONS_FILE = "current_model_predictions.csv"


class Baseline(BaseModel):
    """The model in use, scored on the new model's validation images when it can be."""

    version: str
    classes: list[str]
    accuracy: float | None = Field(description="On the new validation images; None when its classes differ.")
    predictions_path: Path | None = None


class PromotionDecision(BaseModel):
    """Whether the new model was put into use, and why: shown in the report, the artifacts and the RunSummary."""

    promoted: bool
    reason: str
    version: str = Field(description="The new model's version (its run id).")
    version_dir: Path
    accuracy: float = Field(description="The new model's validation accuracy.")
    baseline: Baseline | None = Field(description="The model that was in use before this run, if any.")
    margin: float
    forced: bool

    @property
    def summary(self) -> str:
        """One line for logs: the verdict, then the reason."""
        return f"{'promoted' if self.promoted else 'not promoted'}: {self.reason}"

    @property
    def current_version(self) -> str | None:
        """The version in use after this decision."""
        return self.version if self.promoted else (self.baseline.version if self.baseline else None)

    @property
    def accuracy_change(self) -> float | None:
        """New minus in-use accuracy on the same images, when they could be compared."""
        if self.baseline is None or self.baseline.accuracy is None:
            return None
        return self.accuracy - self.baseline.accuracy


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


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def store_version(model_dir: Path, data_root: Path, version: str, details: dict) -> Path:
    """Copy model.keras and classes.json into models/<version>/, which appears only once complete."""
    folder = models_dir(data_root)
    final = folder / version
    if final.exists():
        raise FileExistsError(f"model version {str(final)!r} already exists; versions are never overwritten")
    staging = folder / f".incoming-{version}-{secrets.token_hex(3)}"
    staging.mkdir(parents=True)
    try:
        for name in (MODEL_FILE, CLASSES_FILE):
            shutil.copy2(Path(model_dir) / name, staging / name)
        record = {"version": version, "stored_at": datetime.now(timezone.utc).isoformat(), **details}
        (staging / VERSION_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        # Flushed before the rename, so after a power cut the version is either absent or whole.
        for name in (MODEL_FILE, CLASSES_FILE, VERSION_FILE):
            _fsync(staging / name)
        staging.rename(final)
        _fsync(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def point_current_at(data_root: Path, version: str) -> None:
    """Switch models/current to a stored version in one atomic rename."""
    folder = models_dir(data_root)
    if not (folder / version / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no complete model version {version!r} in {folder}; versions: {list_versions(data_root)}")
    temporary = folder / f".current-{secrets.token_hex(4)}"
    # Relative, so the models folder still works when moved or mounted elsewhere.
    os.symlink(version, temporary)
    try:
        os.replace(temporary, folder / CURRENT_POINTER)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(folder)


def _percent(value: float) -> str:
    return f"{value:.2%}"


def decide_promotion(
    version: str, accuracy: float, classes: list[str], baseline: Baseline | None, settings: PromotionSettings,
    num_images: int,
) -> tuple[bool, str]:
    """(promote?, why) for a new model with this validation accuracy against the model in use."""
    force_hint = "set promotion.force (tuneflow retrain --force) to put it into use anyway"
    if baseline is None:
        return True, f"no model was in use yet, so {version} ({_percent(accuracy)}) becomes the current model"
    if baseline.accuracy is None:
        if settings.force:
            return True, (f"forced: the model in use ({baseline.version}) has other classes, so the two could not "
                          "be compared; promotion.force is set")
        return False, (
            f"the model in use ({baseline.version}) knows {baseline.classes}, the new one {classes}; they cannot "
            f"be compared on the same images. Kept as version {version}; {force_hint}"
        )
    needed = baseline.accuracy + settings.margin
    comparison = (
        f"{_percent(accuracy)} against {_percent(baseline.accuracy)} for the model in use ({baseline.version}) "
        f"on the same {num_images} validation images"
    )
    bar = f"needed at least {_percent(needed)} (margin {settings.margin * 100:+.2f} points)"
    if accuracy >= needed - COMPARISON_TOLERANCE:
        return True, f"{comparison}; {bar}"
    if settings.force:
        return True, f"forced: {comparison}, short of the {_percent(needed)} needed; promotion.force is set"
    return False, f"{comparison}; {bar}. Kept as version {version}; {force_hint}"


def score_current_model(data_root: Path, dataset: PreparedDataset, classes: list[str], run_dir: Path) -> Baseline | None:
    """The model in use, re-evaluated on this run's validation images when it knows the same classes."""
    version = current_version(data_root)
    if version is None:
        return None
    version_dir = models_dir(data_root) / version
    current_classes = load_classes(version_dir)
    if sorted(current_classes) != sorted(classes):
        return Baseline(version=version, classes=current_classes, accuracy=None)
    predictions = predict_folder_split(version_dir, dataset.root, "val")
    predictions_path = run_dir / BASELINE_PREDICTIONS_FILE
    predictions.to_csv(predictions_path, index=False)
    accuracy = compute_metrics(predictions, current_classes).accuracy
    return Baseline(version=version, classes=current_classes, accuracy=accuracy, predictions_path=predictions_path)


def promote_trained_model(
    trained: TrainedModel,
    evaluation: EvalResult,
    dataset: PreparedDataset,
    settings: PromotionSettings,
    data_root: Path,
    run_dir: Path,
) -> PromotionDecision:
    """Store the model as version <run id>; switch models/current to it if it is at least as good (or forced)."""
    version = run_dir.name
    baseline = score_current_model(data_root, dataset, trained.classes, run_dir)
    version_dir = models_dir(data_root) / version
    # A resumed run (resume_run_id) may have stored this very model before it was interrupted: reuse it.
    # Any other model under an existing version name makes store_version refuse, naming the folder.
    if not (version_dir.is_dir() and filecmp.cmp(version_dir / MODEL_FILE, trained.model_path, shallow=False)):
        version_dir = store_version(
            trained.model_path.parent,
            data_root,
            version,
            {"run_dir": str(run_dir), "accuracy": evaluation.accuracy, "classes": trained.classes},
        )
    promoted, reason = decide_promotion(
        version, evaluation.accuracy, trained.classes, baseline, settings, evaluation.num_images
    )
    if promoted:
        point_current_at(data_root, version)
    return PromotionDecision(
        promoted=promoted,
        reason=reason,
        version=version,
        version_dir=version_dir,
        accuracy=evaluation.accuracy,
        baseline=baseline,
        margin=settings.margin,
        forced=settings.force,
    )
