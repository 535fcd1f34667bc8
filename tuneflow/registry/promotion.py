"""The promote step: grade the model in use fairly against the new one, keep the new one, switch if it is better.

`promote_trained_model` (called by the promote task, tasks/promote.py), under the registry's promotion lock:
  1. scores the model in use on the new run's validation photos it never trained on (its training manifest,
     models/<version>/training_photos.csv, says which), into current_model_predictions.csv;
  2. pairs those predictions with the new model's on the same photos (tuneflow.evaluation.comparison);
  3. stores the new model as a version with its own training manifest and where its data came from;
  4. points `current` at it when `decide_promotion` says so, and records the comparison in metrics.json;
  5. on a promotion, exports it for TF Serving as the next serving version (tuneflow.registry.serving): written before
     `current` switches (a failed export leaves everything as it was), renamed into place after.
A photo the model in use trained on would flatter it: after every upload, about half of a reshuffled validation
set used to be such photos, holding back exactly the models the Drive sensor asks for.
"""

from __future__ import annotations

import filecmp
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from tuneflow.atomic_files import write_text_atomically
from tuneflow.fetch.archives import FetchedArchive
from tuneflow.atomic_files import write_json_atomically
from tuneflow.formatting import percent, points
from tuneflow.evaluation.comparison import PairedComparison, compare_paired
from tuneflow.config import PromotionSettings, ServingSettings
from tuneflow.evaluation.evaluate import decoded_photos_store, predict_files
from tuneflow.evaluation.metrics import read_predictions
from tuneflow.training.model import MODEL_FILE, load_classes
from tuneflow.registry.versions import (
    current_version,
    models_dir,
    point_current_at,
    promotion_lock,
    read_training_photos,
    store_version,
)
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel
from tuneflow.registry.serving import discard_staged, publish_serving_version, stage_serving_version

# Two accuracies on the same images differ by a multiple of 1/n; this only absorbs float rounding (0.8 + 0.01).
COMPARISON_TOLERANCE = 1e-9
# The model in use, scored on this run's validation photos it never trained on, next to predictions.csv.
BASELINE_PREDICTIONS_FILE = "current_model_predictions.csv"
# What the promote step decided, in the run folder: a retry of the run finds it (see promote_trained_model).
DECISION_FILE = "promotion.json"


class Baseline(BaseModel):
    """The model that was in use, and how it compared with the new one."""

    version: str
    classes: list[str]
    accuracy: float | None = Field(description="On the compared photos; None when its classes differ.")
    predictions_path: Path | None = None
    comparison: PairedComparison | None = Field(None, description="Photo by photo; None when its classes differ.")


class PromotionDecision(BaseModel):
    """Whether the new model was put into use, and why: shown in the report, the artifacts and the RunSummary."""

    promoted: bool
    reason: str
    version: str = Field(description="The new model's version (its run id).")
    version_dir: Path
    accuracy: float = Field(description="The new model's validation accuracy (on all its validation photos).")
    baseline: Baseline | None = Field(description="The model that was in use before this run, if any.")
    margin: float
    forced: bool
    serving_version_dir: Path | None = Field(
        None, description="The serving version this promotion exported (data_root/serving/<name>/<N>), if any."
    )

    @property
    def summary(self) -> str:
        """One line for logs: the verdict, then the reason."""
        return f"{'promoted' if self.promoted else 'not promoted'}: {self.reason}"

    @property
    def current_version(self) -> str | None:
        """The version in use after this decision."""
        return self.version if self.promoted else (self.baseline.version if self.baseline else None)

    @property
    def comparison(self) -> PairedComparison | None:
        return self.baseline.comparison if self.baseline else None

    @property
    def accuracy_change(self) -> float | None:
        """New minus in-use accuracy on the photos both were scored on, when they could be compared."""
        comparison = self.comparison
        return comparison.difference if comparison and comparison.compared else None


# Announced when a model is put into use; ops/automations/model-promoted.yaml turns it into an alert.
PROMOTED_EVENT = "tuneflow.model.promoted"


def promotion_event(decision: PromotionDecision) -> dict | None:
    """The event (emit_event's arguments) announcing a promotion: the version, its accuracy and the comparison's
    verdict; None when the model was not put into use."""
    if not decision.promoted:
        return None
    return {
        "event": PROMOTED_EVENT,
        "resource": {"prefect.resource.id": f"tuneflow.model-version.{decision.version}",
                     "prefect.resource.name": decision.version},
        "payload": {
            "version": decision.version,
            "accuracy": decision.accuracy,
            "verdict": decision.reason,
            "previous_version": decision.baseline.version if decision.baseline else None,
            "accuracy_change": decision.accuracy_change,
            "forced": decision.forced,
        },
    }


def decide_promotion(
    version: str, accuracy: float, classes: list[str], baseline: Baseline | None, settings: PromotionSettings
) -> tuple[bool, str]:
    """(promote?, why) for a new model against the model in use, from their paired comparison."""
    force_hint = "set promotion.force (tuneflow retrain --force) to put it into use anyway"
    if baseline is None:
        return True, f"no model was in use yet, so {version} ({percent(accuracy)}) becomes the current model"
    if baseline.comparison is None:
        if settings.force:
            return True, (f"forced: the model in use ({baseline.version}) has other classes, so the two could not "
                          "be compared; promotion.force is set")
        return False, (
            f"the model in use ({baseline.version}) knows {baseline.classes}, the new one {classes}; they cannot "
            f"be compared on the same images. Kept as version {version}; {force_hint}"
        )
    paired = baseline.comparison
    if paired.compared == 0:
        why = (f"none of the new validation photos is one the model in use ({baseline.version}) never trained on "
               f"({paired.left_out} left out: {paired.left_out_reason})")
        if settings.force:
            return True, f"forced: {why}; promotion.force is set"
        return False, f"{why}, so the two cannot be compared fairly. Kept as version {version}; {force_hint}"
    needed = paired.old_accuracy + settings.margin
    left_out = (f"{paired.left_out} left out: {paired.left_out_reason}" if paired.left_out
                else "none left out")
    comparison = (
        f"{percent(paired.new_accuracy)} against {percent(paired.old_accuracy)} for the model in use "
        f"({baseline.version}) on the {paired.compared} validation photos it never trained on ({left_out}); "
        f"{paired.describe()}"
    )
    bar = f"needed at least {percent(needed)} (margin {points(settings.margin, digits=2)})"
    good_enough = paired.new_accuracy >= needed - COMPARISON_TOLERANCE
    if settings.require_significance:
        bar += f" and more photos right than the model in use with McNemar p < {settings.significance_level:g}"
        good_enough = good_enough and paired.significant(settings.significance_level)
    if good_enough:
        return True, f"{comparison}; {bar}"
    if settings.force:
        return True, f"forced: {comparison}; {bar}, not met; promotion.force is set"
    return False, f"{comparison}; {bar}, not met. Kept as version {version}; {force_hint}"


def photos_on_side(dataset: PreparedDataset, side: str) -> pd.DataFrame:
    """The photos preparation put on one side (train or val): sha256, class and file (as under dataset.root)."""
    if dataset.manifest is None or not Path(dataset.manifest).is_file():
        raise FileNotFoundError(
            f"the dataset's manifest ({dataset.manifest}) is missing: it records which photos are on which side, "
            "which promotion needs; prepare the dataset again in a new run"
        )
    manifest = pd.read_csv(dataset.manifest, dtype=str, keep_default_na=False)
    kept = manifest[(manifest["status"] == "kept") & (manifest["split"] == side)]
    return kept[["sha256", "class", "file"]].sort_values("file", ignore_index=True)


def score_current_model(
    data_root: Path, dataset: PreparedDataset, classes: list[str], new_predictions: Path, run_dir: Path,
    decoded_store: Path | None = None,
) -> Baseline | None:
    """The model in use, scored on the new validation photos it never trained on and paired with the new model.

    Its photos are read as evaluation reads them (tuneflow.evaluation.evaluate): from the decoded store kept across
    runs when there is one (already decoded there when the model in use has the new one's image size).
    """
    version = current_version(data_root)
    if version is None:
        return None
    version_dir = models_dir(data_root) / version
    current_classes = load_classes(version_dir)
    if sorted(current_classes) != sorted(classes):
        return Baseline(version=version, classes=current_classes, accuracy=None)
    validation = photos_on_side(dataset, "val")
    trained_on = read_training_photos(data_root, version)
    if trained_on is None:
        seen = pd.Series(False, index=validation.index)
        reason = (f"{version} was stored before models kept their training manifest, so whether it trained on "
                  "some of these photos is unknown")
    else:
        seen = validation["sha256"].isin(trained_on)
        reason = f"{version} trained on them"
    unseen = validation.loc[~seen, "file"].tolist()
    predictions_path = run_dir / BASELINE_PREDICTIONS_FILE
    if unseen:
        with decoded_photos_store(decoded_store, run_dir) as store:
            old = predict_files(version_dir, dataset.root, unseen, store)
    else:
        old = pd.DataFrame(columns=["path", "true_class", "predicted_class", "confidence", "correct"])
    old.to_csv(predictions_path, index=False)
    explained = seen.any() or trained_on is None  # nothing left out needs no reason, an unknown manifest does
    comparison = compare_paired(
        read_predictions(new_predictions), old, left_out=int(seen.sum()), left_out_reason=reason if explained else ""
    )
    return Baseline(
        version=version,
        classes=current_classes,
        accuracy=comparison.old_accuracy if comparison.compared else None,
        predictions_path=predictions_path,
        comparison=comparison,
    )


def macro_f1(evaluation: EvalResult) -> float | None:
    """The macro F1 the evaluate step wrote into metrics.json, for the version's record; None where it wrote none."""
    if not evaluation.metrics_path.is_file():
        return None
    return (json.loads(evaluation.metrics_path.read_text()).get("macro") or {}).get("f1")


def record_in_metrics(metrics_path: Path, decision: PromotionDecision) -> None:
    """Add the promotion and its comparison to metrics.json (written anew, then renamed over the old one)."""
    metrics = json.loads(metrics_path.read_text())
    comparison = decision.comparison
    metrics["promotion"] = {
        "promoted": decision.promoted,
        "reason": decision.reason,
        "compared_with": decision.baseline.version if decision.baseline else None,
        "comparison": comparison.model_dump(mode="json") if comparison else None,
    }
    write_json_atomically(metrics_path, metrics)


def promote_trained_model(
    trained: TrainedModel,
    evaluation: EvalResult,
    dataset: PreparedDataset,
    settings: PromotionSettings,
    serving: ServingSettings,
    data_root: Path,
    run_dir: Path,
    archive: FetchedArchive | None = None,
    notify: Callable[[str], None] = print,
    decoded_store: Path | None = None,
) -> PromotionDecision:
    """Store the model as version <run id>; switch models/current to it if it beats the model in use (or forced),
    and then export it as the next serving version (serving.export_on_promotion).

    Reading `current`, comparing and switching is one critical section (the registry's promotion lock): a run that
    finishes while another promotes waits, then compares itself with whatever that one left in use.
    """
    with promotion_lock(data_root, run_dir.name, notify):
        if (decision := decision_still_in_force(run_dir, data_root)) is not None:
            notify(f"an earlier attempt of this run decided, and the registry still says so: {decision.summary}")
        else:
            decision = decide_and_apply(trained, evaluation, dataset, settings, serving, data_root, run_dir, archive,
                                        notify, decoded_store)
    if evaluation.metrics_path.is_file():
        record_in_metrics(evaluation.metrics_path, decision)
    return decision


def decide_and_apply(
    trained: TrainedModel,
    evaluation: EvalResult,
    dataset: PreparedDataset,
    settings: PromotionSettings,
    serving: ServingSettings,
    data_root: Path,
    run_dir: Path,
    archive: FetchedArchive | None,
    notify: Callable[[str], None],
    decoded_store: Path | None,
) -> PromotionDecision:
    """Compare with the model in use, store the version, and switch and export if it wins (under the lock)."""
    version = run_dir.name
    baseline = score_current_model(data_root, dataset, trained.classes, evaluation.predictions_path, run_dir,
                                   decoded_store)
    promoted, reason = decide_promotion(version, evaluation.accuracy, trained.classes, baseline, settings)
    version_dir = models_dir(data_root) / version
    # A resumed run (resume_run_id) may have stored this very model before it was interrupted: reuse it.
    # Any other model under an existing version name makes store_version refuse, naming the folder.
    if not (version_dir.is_dir() and filecmp.cmp(version_dir / MODEL_FILE, trained.model_path, shallow=False)):
        training_photos = photos_on_side(dataset, "train")
        details = {
            "run_dir": str(run_dir),
            "accuracy": evaluation.accuracy,
            "classes": trained.classes,
            "training_photos": len(training_photos),
            "validation_photos": evaluation.num_images,
            "macro_f1": macro_f1(evaluation),
            # What this run decided; the history (tuneflow.report.history) shows it for every version.
            "promoted": promoted,
            "archive": archive.model_dump(mode="json", exclude={"path"}) if archive else None,
        }
        version_dir = store_version(trained.model_path.parent, data_root, version, details, training_photos, notify)
    decision = PromotionDecision(promoted=promoted, reason=reason, version=version, version_dir=version_dir,
                                 accuracy=evaluation.accuracy, baseline=baseline, margin=settings.margin,
                                 forced=settings.force)
    # Recorded before `current` moves: a retry after a crash in between finds `current` unchanged and decides
    # again, where it would otherwise compare the model with itself.
    write_text_atomically(run_dir / DECISION_FILE, decision.model_dump_json(indent=2) + "\n")
    if promoted:
        staged = (stage_serving_version(version_dir, version, data_root, serving)
                  if serving.export_on_promotion else None)
        try:
            point_current_at(data_root, version)
            if staged is not None:
                serving_dir = publish_serving_version(staged, data_root, serving)
                decision = decision.model_copy(update={"serving_version_dir": serving_dir})
                write_text_atomically(run_dir / DECISION_FILE, decision.model_dump_json(indent=2) + "\n")
                notify(f"exported {version} for TF Serving as {serving_dir}")
        except BaseException:
            discard_staged(staged)
            raise
    return decision


def decision_still_in_force(run_dir: Path, data_root: Path) -> PromotionDecision | None:
    """The decision an earlier attempt of this run recorded, if the registry is still as it left it.

    A run retried after its promote step (say its report failed) must not decide again: its model may be in use
    by now, and would be compared with itself. If `current` has moved since (a rollback, a later run), the
    recorded decision no longer holds and the run decides afresh against the model now in use.
    """
    record = run_dir / DECISION_FILE
    if not record.is_file():
        return None
    earlier = PromotionDecision.model_validate_json(record.read_text())
    stored = (earlier.version_dir / MODEL_FILE).is_file()
    return earlier if stored and earlier.current_version == current_version(data_root) else None
