"""The report's figures as PNG bytes: training curves, confusion heatmap, per-class bars, reliability diagram.

Each function takes plain tables or the Metrics record and returns PNG bytes, so the HTML report can embed them
and report.md can save them next to itself. Nothing here reads a model or a run folder.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tuneflow.evaluation.metrics import Metrics  # noqa: E402

DPI = 110
TRAIN_COLOUR = "#2563eb"
VALIDATION_COLOUR = "#ea580c"
CURRENT_COLOUR = "#9ca3af"
PHASE_SHADES = ["#f1f5f9", "#fef3c7", "#ecfccb"]
PHASE_NAMES = {"head": "head on frozen base", "fine-tune": "fine-tune whole network", "full": "whole network"}
# Above this many classes, numbers in confusion cells would be unreadable.
ANNOTATED_CONFUSION_LIMIT = 20


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _tidy(axis: plt.Axes) -> None:
    axis.spines[["top", "right"]].set_visible(False)
    axis.grid(alpha=0.25)


def training_curves(history: pd.DataFrame) -> bytes:
    """Loss and accuracy per epoch, training against validation, each training phase shaded and named."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    phases = list(history.groupby("phase", sort=False))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for index, (phase, group) in enumerate(phases):
            axis.axvspan(group["epoch"].min() - 0.5, group["epoch"].max() + 0.5,
                         color=PHASE_SHADES[index % len(PHASE_SHADES)], zorder=0)
            axis.text((group["epoch"].min() + group["epoch"].max()) / 2, 1.0, PHASE_NAMES.get(phase, phase),
                      transform=axis.get_xaxis_transform(), ha="center", va="bottom", fontsize=8, color="#475569")
        axis.plot(history["epoch"], history[metric], marker="o", color=TRAIN_COLOUR, label="training")
        axis.plot(history["epoch"], history[f"val_{metric}"], marker="o", color=VALIDATION_COLOUR, label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_xticks(history["epoch"])
        axis.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)
        _tidy(axis)
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(loc="lower right", frameon=False)
    figure.tight_layout()
    return _png(figure)


def confusion_heatmap(metrics: Metrics) -> bytes:
    """Rows: true class; columns: predicted; colour: share of the row, so small classes show as clearly as big."""
    classes = metrics.classes
    counts = np.array(metrics.confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(3.6, 0.55 * len(classes) + 1.8)
    figure, axis = plt.subplots(figsize=(side + 1.0, side))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=40, ha="right", fontsize=8)
    axis.set_yticks(range(len(classes)), classes, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if len(classes) <= ANNOTATED_CONFUSION_LIMIT:
        for row in range(len(classes)):
            for column in range(len(classes)):
                if counts[row, column]:
                    axis.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=9,
                              color="white" if shares[row, column] > 0.55 else "#1e293b")
    colour_bar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    colour_bar.set_label("share of the true class", fontsize=8)
    figure.tight_layout()
    return _png(figure)


def per_class_bars(metrics: Metrics, current: Metrics | None = None) -> bytes:
    """Precision, recall and F1 per class, side by side; the model in use's F1 as a grey outline when known."""
    classes = metrics.classes
    positions = np.arange(len(classes))
    width = 0.26
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(classes) + 2), 3.4))
    for offset, (name, colour) in zip((-width, 0, width), (("precision", "#60a5fa"), ("recall", "#34d399"),
                                                           ("f1", "#1e3a8a"))):
        values = [getattr(metrics.per_class[c], name) or 0.0 for c in classes]
        axis.bar(positions + offset, values, width, label=name if name != "f1" else "F1", color=colour)
    if current is not None:
        values = [(current.per_class[c].f1 or 0.0) if c in current.per_class else 0.0 for c in classes]
        axis.bar(positions + width, values, width, fill=False, edgecolor=CURRENT_COLOUR, linewidth=1.5,
                 linestyle="--", label="F1 of model in use")
    axis.set_xticks(positions, classes, rotation=30 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center")
    axis.set_ylim(0, 1.05)
    axis.legend(ncols=4, loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False, fontsize=8)
    _tidy(axis)
    axis.grid(axis="x", visible=False)
    figure.tight_layout()
    return _png(figure)


def reliability_diagram(metrics: Metrics) -> bytes:
    """Accuracy against confidence per confidence bin, images per bin on top; the diagonal is perfect calibration."""
    bins = [b for b in metrics.calibration.bins if b.count]
    width = metrics.calibration.bins[0].upper - metrics.calibration.bins[0].lower
    figure, axis = plt.subplots(figsize=(4.4, 3.6))
    axis.bar([(b.lower + b.upper) / 2 for b in bins], [b.accuracy for b in bins], width=width * 0.92,
             color="#bfdbfe", edgecolor="#1d4ed8", linewidth=0.8, label="accuracy in bin")
    axis.plot([0, 1], [0, 1], linestyle="--", color="#475569", linewidth=1, label="perfectly calibrated", zorder=3)
    axis.scatter([b.mean_confidence for b in bins], [b.accuracy for b in bins], color="#1d4ed8", s=14, zorder=4,
                 label="mean confidence in bin")
    for b in bins:
        axis.text((b.lower + b.upper) / 2, (b.accuracy or 0) + 0.02, str(b.count), ha="center", fontsize=7,
                  color="#475569")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False, fontsize=7.5)
    _tidy(axis)
    figure.tight_layout()
    return _png(figure)


# At most this many dates under the accuracy-over-time chart; the others are left unlabelled.
HISTORY_TICK_LABELS = 8


def accuracy_over_time(
    versions: list[str], dates: list[str], accuracies: list[float | None], promoted: list[bool | None],
    in_use: str | None,
) -> bytes:
    """Validation accuracy of each model version in the order they were trained, promoted ones filled, the model
    in use ringed and named. Versions are evenly spaced (labelled with their dates): retrainings a minute apart
    stay apart, and weeks without one do not stretch the chart."""
    figure, axis = plt.subplots(figsize=(8, 3.2))
    positions = np.arange(len(versions))
    known = [i for i, a in enumerate(accuracies) if a is not None]
    axis.plot([positions[i] for i in known], [accuracies[i] for i in known], color="#94a3b8", linewidth=1, zorder=1)
    for flag, style in ((True, dict(color=TRAIN_COLOUR, label="promoted")),
                        (False, dict(facecolor="white", edgecolor=TRAIN_COLOUR, label="not promoted")),
                        (None, dict(color=CURRENT_COLOUR, label="promotion not recorded"))):
        chosen = [i for i in known if promoted[i] is flag]
        if chosen:
            axis.scatter([positions[i] for i in chosen], [accuracies[i] for i in chosen], s=36, zorder=3,
                         linewidths=1.5, **style)
    if in_use in versions and accuracies[versions.index(in_use)] is not None:
        where = versions.index(in_use)
        axis.scatter([where], [accuracies[where]], s=220, facecolor="none", edgecolor=VALIDATION_COLOUR,
                     linewidths=2, zorder=4, label="in use")
        axis.annotate("in use", (where, accuracies[where]), textcoords="offset points", xytext=(0, 11),
                      ha="center", fontsize=8, color=VALIDATION_COLOUR)
    step = max(1, int(np.ceil(len(versions) / HISTORY_TICK_LABELS)))
    axis.set_xticks(positions[::step], [dates[i] for i in range(0, len(versions), step)], fontsize=7.5)
    axis.set_xlim(-0.5, max(len(versions) - 0.5, 0.5))
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("validation accuracy")
    axis.set_xlabel("model version, by when it was trained")
    axis.legend(loc="lower right", frameon=False, fontsize=7.5, ncols=4)
    _tidy(axis)
    figure.tight_layout()
    return _png(figure)
