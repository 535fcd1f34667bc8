"""The report's figures: training curves, confusion heatmap, per-class bars, reliability diagram, accuracy over time.

Each function takes plain tables or the Metrics record and returns a matplotlib Figure, drawn in the fonts of
tuneflow.report.fonts (the one place they are set); `png` turns it into the bytes the HTML report embeds and
report.md saves next to itself. Nothing here reads a model or a run folder.

Every figure is laid out for the dashboard's artifact pane, 716 px wide in a 1280 px browser window, for 5
classes as for 101: at most about 8 inches wide (880 px at DPI 110, shown there at 0.81 of that), no wider than
3 times its height, no text under 8 points (9.9 px there).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tuneflow.evaluation.metrics import Metrics, most_confused_pairs, worst_first
from tuneflow.report.fonts import class_labels, styled

DPI = 110
TRAIN_COLOUR = "#2563eb"
VALIDATION_COLOUR = "#ea580c"
CURRENT_COLOUR = "#9ca3af"
MUTED_COLOUR = "#475569"
PHASE_SHADES = ["#f1f5f9", "#fef3c7", "#ecfccb"]
PHASE_NAMES = {"head": "head on frozen base", "fine-tune": "fine-tune whole network", "full": "whole network"}
SCORE_COLOURS = {"precision": "#60a5fa", "recall": "#34d399", "f1": "#1e3a8a"}
SMALL_TEXT_PT = 8
LABEL_PT = 9
# Up to this many classes the confusion matrix is drawn whole, every name on its axes and the photos in each
# cell; above it, the block of the most confused classes is drawn so, beside the whole matrix in small.
WHOLE_CONFUSION_LIMIT = 20
CONFUSED_BLOCK = 20
# Up to this many classes the per-class bars show every class; above it the worst and the best (101 rows of bars
# is a page nobody reads), and the table under the figure has them all.
EVERY_CLASS_BARS = 30
WORST_BARS = 15
BEST_BARS = 5
BAR_ROW_INCHES = 0.42


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, cropped to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _tidy(axis: Axes) -> None:
    axis.spines[["top", "right"]].set_visible(False)
    axis.grid(alpha=0.25)


@styled
def training_curves(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, training against validation, each training phase shaded and named."""
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    axes = figure.subplots(1, 2)
    phases = list(history.groupby("phase", sort=False))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for index, (phase, group) in enumerate(phases):
            axis.axvspan(group["epoch"].min() - 0.5, group["epoch"].max() + 0.5,
                         color=PHASE_SHADES[index % len(PHASE_SHADES)], zorder=0)
            axis.text((group["epoch"].min() + group["epoch"].max()) / 2, 1.0, PHASE_NAMES.get(phase, phase),
                      transform=axis.get_xaxis_transform(), ha="center", va="bottom", fontsize=SMALL_TEXT_PT,
                      color=MUTED_COLOUR)
        axis.plot(history["epoch"], history[metric], marker="o", color=TRAIN_COLOUR, label="training")
        axis.plot(history["epoch"], history[f"val_{metric}"], marker="o", color=VALIDATION_COLOUR, label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_xticks(history["epoch"])
        axis.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)
        _tidy(axis)
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(loc="lower right", frameon=False)
    return figure


def confused_block(metrics: Metrics, size: int = CONFUSED_BLOCK) -> list[int]:
    """The indices of the `size` classes in the largest confusions, each pair's two classes side by side; topped up
    with the worst classes by F1 when fewer classes are confused."""
    block: list[int] = []
    index = {name: position for position, name in enumerate(metrics.classes)}
    pairs = most_confused_pairs(np.array(metrics.confusion), metrics.classes, limit=len(metrics.classes) ** 2)
    for name in [name for pair in pairs for name in (pair.true_class, pair.predicted_class)] + worst_first(metrics):
        if index[name] not in block:
            block.append(index[name])
    return block[:size]


def _heatmap(axis: Axes, counts: np.ndarray, shares: np.ndarray, labels: list[str] | None):
    """Shares as colour; with labels, the names on both axes and the photos in every cell that has any."""
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if labels is None:
        axis.set_xticks([])
        axis.set_yticks([])
        return image
    # Slanted names read more easily, but over a few classes their neighbours' would overlap: upright then.
    slant = 45 if len(labels) <= 8 else 90
    axis.set_xticks(range(len(labels)), labels, rotation=slant, ha="right", rotation_mode="anchor", fontsize=LABEL_PT,
                    va="center" if slant == 90 else "top")
    axis.set_yticks(range(len(labels)), labels, fontsize=LABEL_PT)
    for row, column in zip(*np.nonzero(counts)):
        axis.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=SMALL_TEXT_PT,
                  color="white" if shares[row, column] > 0.55 else "#1e293b")
    return image


@styled
def confusion_heatmap(metrics: Metrics) -> Figure:
    """Rows: true class; columns: predicted; colour: share of the row, so small classes show as clearly as big.
    Over WHOLE_CONFUSION_LIMIT classes: the most confused classes' block, named and counted, beside the whole
    matrix in small (where the block's rows and columns are marked)."""
    names = class_labels(metrics.classes)
    labels = [names[name] for name in metrics.classes]
    counts = np.array(metrics.confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if len(labels) <= WHOLE_CONFUSION_LIMIT:
        side = min(max(3.6, 0.3 * len(labels) + 2.6), 7.0)
        figure = Figure(figsize=(side + 1.0, side), layout="constrained")
        axis = figure.subplots()
        image = _heatmap(axis, counts, shares, labels)
        axis.set_xlabel("predicted class")
        axis.set_ylabel("true class")
        colour_bar = figure.colorbar(image, ax=axis, shrink=0.8)
    else:
        block = confused_block(metrics)
        figure = Figure(figsize=(8, 6.2), layout="constrained")
        axis, whole = figure.subplots(1, 2, width_ratios=[2.2, 1])
        image = _heatmap(axis, counts[np.ix_(block, block)], shares[np.ix_(block, block)], [labels[i] for i in block])
        axis.set_title(f"the {len(block)} most confused classes", fontsize=LABEL_PT + 1)
        axis.set_xlabel("predicted class")
        axis.set_ylabel("true class")
        _heatmap(whole, counts, shares, None)
        whole.set_title(f"all {len(labels)} classes", fontsize=LABEL_PT + 1, pad=10)
        whole.set_xlabel("predicted", fontsize=LABEL_PT)
        whole.set_ylabel("true", fontsize=LABEL_PT, labelpad=10)
        # Where the block's classes are in the whole: marks on its top and left edges.
        whole.scatter(block, [-2.5] * len(block), marker="v", s=10, color=VALIDATION_COLOUR, clip_on=False)
        whole.scatter([-2.5] * len(block), block, marker=">", s=10, color=VALIDATION_COLOUR, clip_on=False)
        whole.set_xlim(-0.5, len(labels) - 0.5)
        whole.set_ylim(len(labels) - 0.5, -0.5)
        colour_bar = figure.colorbar(image, ax=whole, location="bottom")
    colour_bar.set_label("share of the true class", fontsize=SMALL_TEXT_PT)
    return figure


def bar_rows(metrics: Metrics) -> list[str | None]:
    """The classes the per-class bars show, top to bottom: every class, worst F1 first; over EVERY_CLASS_BARS
    classes the worst and the best with a None between them (classes without validation images have no F1 and
    are left out there)."""
    ranked = worst_first(metrics)
    if len(ranked) <= EVERY_CLASS_BARS:
        return list(ranked)
    scored = [name for name in ranked if metrics.per_class[name].f1 is not None]
    return [*scored[:WORST_BARS], None, *scored[-BEST_BARS:]]


@styled
def per_class_bars(metrics: Metrics, current: Metrics | None = None) -> Figure:
    """Precision, recall and F1 per class as horizontal bars, worst F1 at the top, and the F1 of the model in use
    as a grey outline under each class's F1 when known. Over EVERY_CLASS_BARS classes: the worst and the best."""
    rows = bar_rows(metrics)
    names = class_labels(metrics.classes)
    figure = Figure(figsize=(7.2, BAR_ROW_INCHES * len(rows) + 1.3), layout="constrained")
    axis = figure.subplots()
    named = [row for row, name in enumerate(rows) if name is not None]
    shown = [rows[row] for row in named]
    series = {("F1" if score == "f1" else score, SCORE_COLOURS[score]):
              [getattr(metrics.per_class[name], score) for name in shown] for score in ("precision", "recall", "f1")}
    if current is not None:
        series["F1 of model in use", None] = [current.per_class[name].f1 if name in current.per_class else None
                                              for name in shown]
    height = 0.8 / len(series)
    for offset, ((label, colour), values) in enumerate(series.items()):
        style = (dict(color=colour) if colour else
                 dict(fill=False, edgecolor=CURRENT_COLOUR, linewidth=1.2, linestyle="--"))
        axis.barh([row + (offset - (len(series) - 1) / 2) * height for row in named],
                  [value or 0.0 for value in values], height * 0.92, label=label, **style)
    axis.set_yticks(named, [names[name] for name in shown], fontsize=LABEL_PT)
    for row, name in enumerate(rows):
        if name is None:
            hidden = len(metrics.classes) - len(rows) + 1
            axis.text(0.5, row, f"{hidden} classes in between: the per-class table lists every class", ha="center",
                      va="center", fontsize=LABEL_PT, color=MUTED_COLOUR, transform=axis.get_yaxis_transform())
        elif metrics.per_class[name].f1 is None:
            axis.text(0.01, row, "no validation image", va="center", fontsize=SMALL_TEXT_PT, color=MUTED_COLOUR)
    axis.set_ylim(len(rows) - 0.5, -0.5)  # worst at the top
    axis.set_xlim(0, 1)
    axis.set_xlabel("score (the classes with the lowest F1 at the top)")
    axis.xaxis.set_tick_params(labeltop=len(rows) > 10, top=len(rows) > 10)
    axis.legend(ncols=len(series), loc="lower center", bbox_to_anchor=(0.5, 1.0 + (0.04 if len(rows) > 10 else 0)),
                frameon=False, fontsize=LABEL_PT)
    _tidy(axis)
    axis.grid(axis="y", visible=False)
    return figure


@styled
def reliability_diagram(metrics: Metrics) -> Figure:
    """Accuracy against confidence per confidence bin, images per bin on top; the diagonal is perfect calibration."""
    bins = [b for b in metrics.calibration.bins if b.count]
    width = metrics.calibration.bins[0].upper - metrics.calibration.bins[0].lower
    figure = Figure(figsize=(4.4, 3.6), layout="constrained")
    axis = figure.subplots()
    axis.bar([(b.lower + b.upper) / 2 for b in bins], [b.accuracy for b in bins], width=width * 0.92,
             color="#bfdbfe", edgecolor="#1d4ed8", linewidth=0.8, label="accuracy in bin")
    axis.plot([0, 1], [0, 1], linestyle="--", color=MUTED_COLOUR, linewidth=1, label="perfectly calibrated", zorder=3)
    axis.scatter([b.mean_confidence for b in bins], [b.accuracy for b in bins], color="#1d4ed8", s=14, zorder=4,
                 label="mean confidence in bin")
    for b in bins:
        axis.text((b.lower + b.upper) / 2, (b.accuracy or 0) + 0.02, str(b.count), ha="center",
                  fontsize=SMALL_TEXT_PT, color=MUTED_COLOUR)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False, fontsize=SMALL_TEXT_PT)
    _tidy(axis)
    return figure


# At most this many dates under the accuracy-over-time chart; the others are left unlabelled.
HISTORY_TICK_LABELS = 8


@styled
def accuracy_over_time(
    versions: list[str], dates: list[str], accuracies: list[float | None], promoted: list[bool | None],
    in_use: str | None,
) -> Figure:
    """Validation accuracy of each model version in the order they were trained, promoted ones filled, the model
    in use ringed and named. Versions are evenly spaced (labelled with their dates): retrainings a minute apart
    stay apart, and weeks without one do not stretch the chart."""
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    axis = figure.subplots()
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
                      ha="center", fontsize=SMALL_TEXT_PT, color=VALIDATION_COLOUR)
    step = max(1, int(np.ceil(len(versions) / HISTORY_TICK_LABELS)))
    axis.set_xticks(positions[::step], [dates[i] for i in range(0, len(versions), step)], fontsize=SMALL_TEXT_PT)
    axis.set_xlim(-0.5, max(len(versions) - 0.5, 0.5))
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("validation accuracy")
    axis.set_xlabel("model version, by when it was trained")
    axis.legend(loc="lower right", frameon=False, fontsize=SMALL_TEXT_PT, ncols=4)
    _tidy(axis)
    return figure
