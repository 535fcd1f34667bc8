"""The report as markdown: report.md, the dashboard's report artifact, and the per-class table they show.

Pure functions of the metrics and records the report gathered (tuneflow.report.content); report.html is rendered from
the same ReportContent by tuneflow.report.html, and tuneflow.report.dashboard embeds the figures for the artifact. Every
name from the archive goes through tuneflow.report.text (escaped; — where a value is undefined).
"""

from __future__ import annotations

import json

import pandas as pd

from tuneflow.dataset import REASONS
from tuneflow.dataset.prepare import MANIFEST_NAME, counts_table
from tuneflow.formatting import UNDEFINED, percent, points
from tuneflow.report.fonts import numbered_classes
from tuneflow.report.plots import BEST_BARS, WORST_BARS, bar_rows
from tuneflow.report.html import NUMBERED_CLASSES_NOTE, ReportContent, findings, headline_top_k, label
from tuneflow.report.text import escape, table, training_setup_text
from tuneflow.evaluation.metrics import Metrics, worst_first
from tuneflow.registry.promotion import PromotionDecision
from tuneflow.records import PreparedDataset

PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support", "predicted"]


def change_text(decision: PromotionDecision | None) -> str:
    if decision is None:
        return UNDEFINED
    version = escape(decision.baseline.version) if decision.baseline else ""
    if decision.baseline is None:
        return "first model: none was in use"
    if decision.comparison is None:
        return f"not comparable: {version} has other classes"
    if decision.accuracy_change is None:
        return f"not compared: {version} trained on every one of these validation photos"
    paired = decision.comparison
    return (f"{points(decision.accuracy_change)} against {version} "
            f"({percent(paired.old_accuracy)} on the {paired.compared} photos it never trained on)")


def comparison_markdown(decision: PromotionDecision | None) -> list[str]:
    """The paired comparison with the model in use: which photos, the 2x2 table, the test and the interval."""
    paired = decision.comparison if decision else None
    if paired is None:
        return []
    left_out = f"{paired.left_out} left out ({escape(paired.left_out_reason)})" if paired.left_out else "none left out"
    lines = [
        "## Compared with the model in use",
        "",
        f"Compared with {escape(decision.baseline.version)} on {paired.compared} validation photos it never trained on; "
        f"{left_out}. Its predictions are in `current_model_predictions.csv`.",
        "",
    ]
    if not paired.compared:
        return lines
    return lines + [
        "| | model in use right | model in use wrong |",
        "| --- | ---: | ---: |",
        f"| new model right | {paired.both_right} | {paired.only_new_right} |",
        f"| new model wrong | {paired.only_old_right} | {paired.both_wrong} |",
        "",
        f"Accuracy on these photos: new model {percent(paired.new_accuracy)}, model in use "
        f"{percent(paired.old_accuracy)}; difference {points(paired.difference)} (95 % interval "
        f"{paired.difference_low * 100:+.1f} to {paired.difference_high * 100:+.1f}); McNemar exact p = "
        f"{paired.mcnemar_p:.3g}.",
        "",
    ]


def decision_text(decision: PromotionDecision | None) -> str:
    if decision is None:
        return ""
    verdict = "Promoted" if decision.promoted else "Not promoted"
    return f"**{verdict}:** {escape(decision.reason)}"


def per_class_frame(metrics: Metrics, current: Metrics | None = None) -> pd.DataFrame:
    """Per class, worst F1 first: precision, recall, F1, support, predicted (and the F1 of the model in use); None
    where undefined."""
    ranked = worst_first(metrics)
    frame = pd.DataFrame([{"class": name, **metrics.per_class[name].model_dump()} for name in ranked])
    frame = frame[PER_CLASS_COLUMNS]
    if current is not None:
        frame["f1_model_in_use"] = [current.per_class[name].f1 if name in current.per_class else None
                                    for name in ranked]
    frame = frame.astype(object)
    return frame.where(frame.notna(), None)


def per_class_rows(metrics: Metrics, current: Metrics | None = None) -> list[dict]:
    """The per-class table artifact: scores rounded to 4 decimals, undefined values as UNDEFINED (—)."""
    return [
        {key: UNDEFINED if value is None else (round(value, 4) if isinstance(value, float) else value)
         for key, value in row.items()}
        for row in per_class_frame(metrics, current).to_dict("records")
    ]


def per_class_markdown(metrics: Metrics, current: Metrics | None = None,
                       shown: list[str | None] | None = None) -> str:
    """The per-class table as markdown, worst F1 first: names escaped, scores to 3 decimals, — where undefined.
    Every class, or the `shown` ones, where None is a row saying how many are left out there."""
    frame = per_class_frame(metrics, current)
    columns = [c.replace("_", " ") for c in frame.columns]
    numeric = {c for c in columns if c != "class"}
    rows = frame.values.tolist()
    if shown is not None:
        by_class = dict(zip(frame["class"], rows))
        gap = [f"… {len(metrics.classes) - len(shown) + 1} more classes", *[""] * (len(columns) - 1)]
        rows = [by_class[name] if name is not None else gap for name in shown]
    return table(columns, rows, right=numeric)


def dashboard_per_class_markdown(metrics: Metrics, current: Metrics | None) -> list[str]:
    """The artifact's per-class table: every class, or over plots.EVERY_CLASS_BARS classes the ones the bars show
    (a table of 101 rows would push the rest of the report 4,500 px down), saying where the others are."""
    shown = bar_rows(metrics)
    if None not in shown:
        return [per_class_markdown(metrics, current), ""]
    return [
        per_class_markdown(metrics, current, shown),
        "",
        f"The {WORST_BARS} classes with the lowest F1 and the {BEST_BARS} with the highest, as in the figure: the "
        f"`retrain-per-class-metrics` artifact and report.html list all {len(metrics.classes)}.",
        "",
    ]


def numbered_classes_markdown(metrics: Metrics) -> list[str]:
    """The classes the figures call by number, with their names; nothing when the figures name every class."""
    numbered = numbered_classes(metrics.classes)
    if not numbered:
        return []
    return [NUMBERED_CLASSES_NOTE, "", table(["in the figures", "class"], [list(row) for row in numbered]), ""]


def headline_markdown(run_id: str, metrics: Metrics, decision: PromotionDecision | None) -> list[str]:
    k = headline_top_k(metrics)
    rows = [
        ("validation accuracy", f"**{percent(metrics.accuracy)}** ({metrics.num_correct} of {metrics.num_images} images)"),
        ("change vs model in use", change_text(decision)),
        *([(f"top-{k} accuracy", percent(metrics.top_k_accuracy[k]))] if k else []),
        ("macro F1 / weighted F1", f"{metrics.macro.f1:.3f} / {metrics.weighted.f1:.3f}"),
        ("calibration", f"mean confidence {percent(metrics.calibration.mean_confidence)}, "
                        f"expected calibration error {percent(metrics.calibration.expected_calibration_error)}"),
    ]
    notes = findings(metrics)
    return [
        f"# Retraining run {escape(run_id)}",
        "",
        f"**Validation accuracy: {percent(metrics.accuracy)}**, {len(metrics.classes)} classes.",
        "",
        decision_text(decision),
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {label} | {value} |" for label, value in rows],
        "",
        *[f"- {escape(note)}" for note in notes],
        *([""] if notes else []),
    ]


def confused_markdown(metrics: Metrics) -> list[str]:
    if not metrics.most_confused:
        return ["No validation image was misclassified.", ""]
    return [
        f"- {escape(p.true_class)} → {escape(p.predicted_class)}: {p.count} images "
        f"({percent(p.share_of_class, 0)} of {escape(p.true_class)})"
        for p in metrics.most_confused
    ] + [""]


def confusion_markdown(metrics: Metrics) -> str:
    """The confusion matrix as a table: rows true classes, columns predicted."""
    rows = [[name, *counts] for name, counts in zip(metrics.classes, metrics.confusion)]
    return table(["true \\ predicted", *metrics.classes], rows, right=set(metrics.classes))


def history_markdown(history: pd.DataFrame) -> str:
    """history.csv as a table: one row per epoch, losses and accuracies to 4 decimals, — where missing."""
    rows = history.astype(object).where(history.notna(), None).values.tolist()
    return table(list(history.columns), rows, spec=".4f", right=set(history.columns) - {"phase"})


def image_markdown(uri: str | None, alt: str) -> list[str]:
    """An image paragraph (alt is ours, never archive text), or nothing when there is no such figure."""
    return [f"![{escape(alt)}]({uri})", ""] if uri else []


def render_summary_markdown(
    content: ReportContent, figures: dict[str, str], mistakes: list[str], report_location: str
) -> str:
    """The dashboard's report artifact: headline, decision, per class, where it fails, training, and the figures.

    `figures` maps a figure name to its image URI (data: URIs in the dashboard), `mistakes` is the markdown of the
    most confident mistakes, `report_location` a paragraph saying where report.html is.
    """
    metrics = content.metrics
    return "\n".join([
        *headline_markdown(content.run_id, metrics, content.decision),
        *comparison_markdown(content.decision),
        "## Per class",
        "",
        *image_markdown(figures.get("per_class"), "precision, recall and F1 per class"),
        *numbered_classes_markdown(metrics),
        *dashboard_per_class_markdown(metrics, content.current_metrics),
        "## Where it goes wrong",
        "",
        *confused_markdown(metrics),
        *image_markdown(figures.get("confusion"), "confusion matrix"),
        *mistakes,
        "## Training",
        "",
        escape(training_setup_text(content.training)),
        "",
        *image_markdown(figures.get("curves"), "training curves"),
        "## Across retrainings",
        "",
        *image_markdown(figures.get("history"), "validation accuracy of every model version"),
        "Every model version, with its data and whether it was promoted: the `retrain-history` artifact.",
        "",
        "## The full report",
        "",
        report_location,
        "",
    ])


def data_section(dataset: PreparedDataset) -> list[str]:
    """Images per class and split, files passed over by reason, and what the prepare step noticed."""
    source = f"; reused the preparation in {escape(dataset.reused_from)}" if dataset.reused_from else ""
    counts = counts_table(dataset)
    counts.index = [escape(name) for name in counts.index]
    counts.index.name = "class"
    lines = [
        f"{dataset.total:,} images from {dataset.files_seen:,} files in the archive, "
        f"{'split by seed' if dataset.split_method == 'seeded' else 'split as the archive gave it'}; every file is "
        f"listed with its status in `{MANIFEST_NAME}`{source}.",
        "",
        counts.to_markdown(),
    ]
    passed_over = [
        (status, escape(reason), count, escape(REASONS.get(reason, "")))
        for status, by_reason in (("skipped", dataset.skipped), ("ignored", dataset.ignored))
        for reason, count in by_reason.items()
    ]
    if passed_over:
        passed = pd.DataFrame(passed_over, columns=["status", "reason", "files", "meaning"])
        lines += ["", passed.to_markdown(index=False)]
    if dataset.notes:
        lines += ["", *[f"- {escape(note)}" for note in dataset.notes]]
    return lines


def render_markdown(content: ReportContent, figure_files: dict[str, str]) -> str:
    """report.md: the whole report as markdown, with the figures as files next to it."""
    metrics = content.metrics
    provenance = content.archive.model_dump(mode="json")
    return "\n".join([
        *headline_markdown(content.run_id, metrics, content.decision),
        *comparison_markdown(content.decision),
        "## Per class",
        "",
        *image_markdown(figure_files.get("per_class"), "precision, recall and F1 per class"),
        *numbered_classes_markdown(metrics),
        per_class_markdown(metrics, content.current_metrics),
        "",
        "Top-k accuracy: " + ", ".join(f"top-{k} {percent(v)}" for k, v in metrics.top_k_accuracy.items()) + ".",
        "",
        "## Where it goes wrong",
        "",
        *confused_markdown(metrics),
        *image_markdown(figure_files.get("confusion"), "confusion matrix"),
        confusion_markdown(metrics),
        "",
        "## Calibration",
        "",
        *image_markdown(figure_files.get("calibration"), "reliability diagram"),
        "## Training",
        "",
        escape(training_setup_text(content.training)),
        "",
        *image_markdown(figure_files.get("curves"), "training curves"),
        history_markdown(content.history),
        "",
        "## Across retrainings",
        "",
        *image_markdown(figure_files.get("history"), "validation accuracy of every model version"),
        "## Data",
        "",
        *data_section(content.dataset),
        "",
        table(["provenance", "value"], [[label(key), value] for key, value in provenance.items()]),
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(content.config, indent=2),
        "```",
        "",
    ])
