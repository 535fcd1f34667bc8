"""Every number of the report, computed from the predictions table alone: no model, no second inference pass.

The table is `predictions.csv` as the evaluate step writes it: one row per validation image with `true_class`,
`predicted_class`, `confidence` and one `p_<class>` probability column per class. Anyone holding that file can
recompute these metrics and get the same answer.

Conventions, where a ratio has nothing to divide by:
- precision of a class the model never predicted is undefined: stored as None, counted as 0 in averages;
- recall and F1 of a class with no validation image are undefined: stored as None; such a class says nothing
  about the model, so the macro average leaves it out (and the weighted average gives it weight 0 anyway).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

# The ImageNet convention; capped at the number of classes.
TOP_K = 5
CALIBRATION_BINS = 10
MOST_CONFUSED_PAIRS = 5
PROBABILITY_PREFIX = "p_"


def probability_column(class_name: str) -> str:
    return f"{PROBABILITY_PREFIX}{class_name}"


def predictions_table(
    names: list[str], probabilities: np.ndarray, classes: list[str], true_classes: list[str] | None = None
) -> pd.DataFrame:
    """predictions.csv's columns: path, predicted_class, confidence, top<i>_class and top<i>_probability for the
    TOP_K most probable classes, and p_<class> for every class; with true_classes (evaluation), true_class after
    path and correct after confidence.

    Built from every column at once: adding 100 p_<class> columns one by one makes pandas copy the frame again and
    again and warn that it is "highly fragmented".
    """
    ranking = np.argsort(-probabilities, axis=1, kind="stable")  # ties in class order, as argmax
    predicted = [classes[i] for i in ranking[:, 0]] if len(names) else []
    columns: dict[str, object] = {"path": names}
    if true_classes is not None:
        columns["true_class"] = true_classes
    columns["predicted_class"] = predicted
    columns["confidence"] = probabilities.max(axis=1) if len(names) else []
    if true_classes is not None:
        columns["correct"] = np.array([truth == guess for truth, guess in zip(true_classes, predicted)], dtype=bool)
    for rank in range(min(TOP_K, len(classes))):
        columns[f"top{rank + 1}_class"] = [classes[i] for i in ranking[:, rank]]
        columns[f"top{rank + 1}_probability"] = np.take_along_axis(probabilities, ranking[:, rank : rank + 1], 1)[:, 0]
    for index, name in enumerate(classes):
        columns[probability_column(name)] = probabilities[:, index]
    return pd.DataFrame(columns)


class ClassMetrics(BaseModel):
    """How the model does on one class."""

    precision: float | None = Field(description="Share of the images predicted as this class that are it; None if never predicted.")
    recall: float | None = Field(description="Share of this class's images predicted as it; None if it has no images.")
    f1: float | None = Field(description="Harmonic mean of precision and recall; None when recall is undefined.")
    support: int = Field(description="Validation images of this class.")
    predicted: int = Field(description="Validation images predicted as this class.")


class Averages(BaseModel):
    precision: float
    recall: float
    f1: float


class ConfusedPair(BaseModel):
    """Images of one class predicted as another."""

    true_class: str
    predicted_class: str
    count: int
    share_of_class: float = Field(description="count / support of the true class.")


class CalibrationBin(BaseModel):
    """Predictions whose confidence falls in (lower, upper]."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


class Calibration(BaseModel):
    """Does a confidence of 0.9 mean right 9 times in 10?"""

    mean_confidence: float
    accuracy: float
    expected_calibration_error: float = Field(
        description="Sum over bins of (bin share of images) x |bin accuracy - bin mean confidence|; 0 is perfect."
    )
    bins: list[CalibrationBin]


class Metrics(BaseModel):
    """All metrics of one model on one set of labelled images."""

    accuracy: float
    num_images: int
    num_correct: int
    classes: list[str]
    top_k_accuracy: dict[int, float] = Field(description="k -> share of images whose class is among the k most probable.")
    per_class: dict[str, ClassMetrics]
    macro: Averages = Field(description="Unweighted mean over the classes that have validation images.")
    weighted: Averages = Field(description="Mean over classes weighted by support.")
    confusion: list[list[int]] = Field(description="Counts; rows are true classes, columns predicted, in `classes` order.")
    most_confused: list[ConfusedPair]
    calibration: Calibration


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def read_predictions(path: Path) -> pd.DataFrame:
    """predictions.csv with every class name read as text, so classes named "1" or "nan" stay themselves."""
    header = pd.read_csv(path, nrows=0).columns
    text_columns = {column: str for column in header if column == "path" or column.endswith("_class")}
    return pd.read_csv(path, dtype=text_columns, keep_default_na=False, na_values=[])


def check_predictions(predictions: pd.DataFrame, classes: list[str]) -> None:
    """Fail with the offending value when the table cannot be scored against these classes."""
    if predictions.empty:
        raise ValueError("the predictions table has no rows; there is nothing to score")
    needed = ["true_class", "predicted_class", "confidence", *(probability_column(name) for name in classes)]
    missing = [column for column in needed if column not in predictions.columns]
    if missing:
        raise ValueError(
            f"the predictions table lacks the columns {missing}; it needs true_class, predicted_class, confidence "
            "and one p_<class> probability column per class, as the evaluate step writes predictions.csv"
        )
    for column in ("true_class", "predicted_class"):
        unknown = sorted(set(predictions[column]) - set(classes))
        if unknown:
            raise ValueError(f"{column} holds {unknown}, which are not among the model's classes {classes}")


def confusion_matrix(predictions: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class, both in `classes` order."""
    index = {name: position for position, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (predictions["true_class"].map(index), predictions["predicted_class"].map(index)), 1)
    return counts


def per_class_metrics(confusion: np.ndarray, classes: list[str]) -> dict[str, ClassMetrics]:
    result = {}
    for position, name in enumerate(classes):
        true_positive = int(confusion[position, position])
        support = int(confusion[position].sum())
        predicted = int(confusion[:, position].sum())
        precision = _ratio(true_positive, predicted)
        recall = _ratio(true_positive, support)
        if recall is None:
            f1 = None
        else:
            precision_or_zero = precision or 0.0
            f1 = _ratio(2 * precision_or_zero * recall, precision_or_zero + recall) or 0.0
        result[name] = ClassMetrics(precision=precision, recall=recall, f1=f1, support=support, predicted=predicted)
    return result


def average_metrics(per_class: dict[str, ClassMetrics]) -> tuple[Averages, Averages]:
    """(macro, weighted) averages; see the module docstring for undefined values."""
    present = [m for m in per_class.values() if m.support > 0]
    values = {
        name: np.array([getattr(m, name) or 0.0 for m in present]) for name in ("precision", "recall", "f1")
    }
    support = np.array([m.support for m in present], dtype=float)
    macro = Averages(**{name: float(v.mean()) for name, v in values.items()})
    weighted = Averages(**{name: float((v * support).sum() / support.sum()) for name, v in values.items()})
    return macro, weighted


def top_k_accuracy(predictions: pd.DataFrame, classes: list[str], max_k: int) -> dict[int, float]:
    """Share of rows whose true class is among the k most probable, for k = 1..max_k.

    A stable sort ranks tied probabilities in class order, as argmax picks the predicted class.
    """
    probabilities = predictions[[probability_column(name) for name in classes]].to_numpy(dtype=float)
    ranking = np.argsort(-probabilities, axis=1, kind="stable")
    truth = predictions["true_class"].map({name: i for i, name in enumerate(classes)}).to_numpy()
    rank_of_truth = (ranking == truth[:, None]).argmax(axis=1)
    return {k: float((rank_of_truth < k).mean()) for k in range(1, min(max_k, len(classes)) + 1)}


def most_confused_pairs(confusion: np.ndarray, classes: list[str], limit: int) -> list[ConfusedPair]:
    """The largest off-diagonal counts, biggest first."""
    pairs = []
    for row, true_class in enumerate(classes):
        support = confusion[row].sum()
        for column, predicted_class in enumerate(classes):
            count = int(confusion[row, column])
            if row != column and count > 0:
                pairs.append(ConfusedPair(true_class=true_class, predicted_class=predicted_class, count=count,
                                          share_of_class=count / support))
    pairs.sort(key=lambda pair: (-pair.count, -pair.share_of_class, pair.true_class, pair.predicted_class))
    return pairs[:limit]


def worst_first(metrics: Metrics) -> list[str]:
    """The classes by F1, lowest first (ties by name), then those without validation images (F1 undefined)."""
    def key(name: str) -> tuple[bool, float, str]:
        f1 = metrics.per_class[name].f1
        return f1 is None, f1 or 0.0, name

    return sorted(metrics.classes, key=key)


def calibration(confidence: np.ndarray, correct: np.ndarray, num_bins: int) -> Calibration:
    """Reliability bins of equal width over (0, 1] and the expected calibration error."""
    # Bin i holds confidences in (i/n, (i+1)/n]; a confidence of exactly 0 joins the first bin.
    which = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
    bins = []
    error = 0.0
    for i in range(num_bins):
        in_bin = which == i
        count = int(in_bin.sum())
        mean_confidence = float(confidence[in_bin].mean()) if count else None
        accuracy = float(correct[in_bin].mean()) if count else None
        if count:
            error += count / len(confidence) * abs(accuracy - mean_confidence)
        bins.append(CalibrationBin(lower=i / num_bins, upper=(i + 1) / num_bins, count=count,
                                   mean_confidence=mean_confidence, accuracy=accuracy))
    return Calibration(mean_confidence=float(confidence.mean()), accuracy=float(correct.mean()),
                       expected_calibration_error=float(error), bins=bins)


def compute_metrics(
    predictions: pd.DataFrame,
    classes: list[str],
    max_k: int = TOP_K,
    calibration_bins: int = CALIBRATION_BINS,
    confused_pairs: int = MOST_CONFUSED_PAIRS,
) -> Metrics:
    """Accuracy, top-k, per-class and averaged precision/recall/F1, confusion, calibration: from the table alone."""
    check_predictions(predictions, classes)
    confusion = confusion_matrix(predictions, classes)
    correct = (predictions["true_class"] == predictions["predicted_class"]).to_numpy()
    per_class = per_class_metrics(confusion, classes)
    macro, weighted = average_metrics(per_class)
    return Metrics(
        accuracy=float(correct.mean()),
        num_images=len(predictions),
        num_correct=int(correct.sum()),
        classes=classes,
        top_k_accuracy=top_k_accuracy(predictions, classes, max_k),
        per_class=per_class,
        macro=macro,
        weighted=weighted,
        confusion=confusion.tolist(),
        most_confused=most_confused_pairs(confusion, classes, confused_pairs),
        calibration=calibration(predictions["confidence"].to_numpy(dtype=float), correct, calibration_bins),
    )
