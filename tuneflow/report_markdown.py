"""The report as markdown: report.md, the dashboard's summary artifact, and the per-class table they show.

Pure functions of the metrics and records the report gathered (tuneflow.report); report.html is rendered from
the same ReportContent by tuneflow.html_report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tuneflow.dataset import REASONS
from tuneflow.dataset.prepare import MANIFEST_NAME, counts_table
from tuneflow.html_report import ReportContent, findings, headline_top_k, label
from tuneflow.metrics import Metrics
from tuneflow.promotion import PromotionDecision
from tuneflow.records import PreparedDataset


def change_text(decision: PromotionDecision | None) -> str:
    if decision is None:
        return "-"
    if decision.baseline is None:
        return "first model: none was in use"
    if decision.comparison is None:
        return f"not comparable: {decision.baseline.version} has other classes"
    if decision.accuracy_change is None:
        return f"not compared: {decision.baseline.version} trained on every one of these validation photos"
    paired = decision.comparison
    return (f"{decision.accuracy_change * 100:+.1f} points against {decision.baseline.version} "
            f"({paired.old_accuracy:.2%} on the {paired.compared} photos it never trained on)")


def comparison_markdown(decision: PromotionDecision | None) -> list[str]:
    """The paired comparison with the model in use: which photos, the 2x2 table, the test and the interval."""
    paired = decision.comparison if decision else None
    if paired is None:
        return []
    left_out = f"{paired.left_out} left out ({paired.left_out_reason})" if paired.left_out else "none left out"
    lines = [
        "## Compared with the model in use",
        "",
        f"Compared with {decision.baseline.version} on {paired.compared} validation photos it never trained on; "
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
        f"Accuracy on these photos: new model {paired.new_accuracy:.2%}, model in use {paired.old_accuracy:.2%}; "
        f"difference {paired.difference * 100:+.1f} points (95 % interval {paired.difference_low * 100:+.1f} to "
        f"{paired.difference_high * 100:+.1f}); McNemar exact p = {paired.mcnemar_p:.3g}.",
        "",
    ]


def decision_text(decision: PromotionDecision | None) -> str:
    if decision is None:
        return ""
    verdict = "Promoted" if decision.promoted else "Not promoted"
    return f"**{verdict}:** {decision.reason}"


def per_class_frame(metrics: Metrics, current: Metrics | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(
        [{"class": name, **metrics.per_class[name].model_dump()} for name in metrics.classes]
    )[["class", "precision", "recall", "f1", "support", "predicted"]]
    if current is not None:
        frame["f1_model_in_use"] = [
            current.per_class[name].f1 if name in current.per_class else None for name in metrics.classes
        ]
    return frame


def per_class_rows(metrics: Metrics, current: Metrics | None = None) -> list[dict]:
    """The per-class table artifact: rounded, undefined values as None (shown empty in the dashboard)."""
    frame = per_class_frame(metrics, current).round(4).astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def headline_markdown(run_id: str, metrics: Metrics, decision: PromotionDecision | None) -> list[str]:
    k = headline_top_k(metrics)
    rows = [
        ("validation accuracy", f"**{metrics.accuracy:.2%}** ({metrics.num_correct} of {metrics.num_images} images)"),
        ("change vs model in use", change_text(decision)),
        *([(f"top-{k} accuracy", f"{metrics.top_k_accuracy[k]:.2%}")] if k else []),
        ("macro F1 / weighted F1", f"{metrics.macro.f1:.3f} / {metrics.weighted.f1:.3f}"),
        ("calibration", f"mean confidence {metrics.calibration.mean_confidence:.2%}, "
                        f"expected calibration error {metrics.calibration.expected_calibration_error:.2%}"),
    ]
    return [
        f"# Retraining run {run_id}",
        "",
        f"**Validation accuracy: {metrics.accuracy:.2%}**, {len(metrics.classes)} classes.",
        "",
        decision_text(decision),
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {label} | {value} |" for label, value in rows],
        "",
        *[f"- {note}" for note in findings(metrics)],
        *([""] if findings(metrics) else []),
    ]


def confused_markdown(metrics: Metrics) -> list[str]:
    if not metrics.most_confused:
        return ["No validation image was misclassified.", ""]
    return [
        f"- {p.true_class} → {p.predicted_class}: {p.count} images ({p.share_of_class:.0%} of {p.true_class})"
        for p in metrics.most_confused
    ] + [""]


def render_summary_markdown(run_id: str, metrics: Metrics, decision: PromotionDecision | None, html_path: Path) -> str:
    """The dashboard's markdown artifact: the headline, the decision, per class, where it fails."""
    return "\n".join([
        *headline_markdown(run_id, metrics, decision),
        *comparison_markdown(decision),
        "## Per class",
        "",
        per_class_frame(metrics).to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Most confused",
        "",
        *confused_markdown(metrics),
        f"Full report with plots and images: `{html_path}`",
        "",
    ])


def data_section(dataset: PreparedDataset) -> list[str]:
    """Images per class and split, files passed over by reason, and what the prepare step noticed."""
    source = f"; reused the preparation in `{dataset.reused_from}`" if dataset.reused_from else ""
    lines = [
        f"{dataset.total:,} images from {dataset.files_seen:,} files in the archive, "
        f"{'split by seed' if dataset.split_method == 'seeded' else 'split as the archive gave it'}; every file is "
        f"listed with its status in `{MANIFEST_NAME}`{source}.",
        "",
        counts_table(dataset).to_markdown(),
    ]
    passed_over = [
        (status, reason, count, REASONS.get(reason, ""))
        for status, by_reason in (("skipped", dataset.skipped), ("ignored", dataset.ignored))
        for reason, count in by_reason.items()
    ]
    if passed_over:
        table = pd.DataFrame(passed_over, columns=["status", "reason", "files", "meaning"])
        lines += ["", table.to_markdown(index=False)]
    if dataset.notes:
        lines += ["", *[f"- {note}" for note in dataset.notes]]
    return lines


def render_markdown(content: ReportContent, figure_files: dict[str, str]) -> str:
    """report.md: the whole report as markdown, with the figures as files next to it."""
    metrics = content.metrics
    confusion = pd.DataFrame(metrics.confusion, index=metrics.classes, columns=metrics.classes)
    confusion.index.name = "true \\ predicted"
    provenance = content.archive.model_dump(mode="json")

    def image(name: str, alt: str) -> list[str]:
        return [f"![{alt}]({figure_files[name]})", ""] if name in figure_files else []

    return "\n".join([
        *headline_markdown(content.run_id, metrics, content.decision),
        *comparison_markdown(content.decision),
        "## Per class",
        "",
        *image("per_class", "precision, recall and F1 per class"),
        per_class_frame(metrics, content.current_metrics).to_markdown(index=False, floatfmt=".3f"),
        "",
        "Top-k accuracy: " + ", ".join(f"top-{k} {v:.2%}" for k, v in metrics.top_k_accuracy.items()) + ".",
        "",
        "## Where it goes wrong",
        "",
        *confused_markdown(metrics),
        *image("confusion", "confusion matrix"),
        confusion.to_markdown(),
        "",
        "## Calibration",
        "",
        *image("calibration", "reliability diagram"),
        "## Training",
        "",
        *image("curves", "training curves"),
        content.history.to_markdown(index=False, floatfmt=".4f"),
        "",
        "## Data",
        "",
        *data_section(content.dataset),
        "",
        "| provenance | value |",
        "| --- | --- |",
        *[f"| {label(key)} | {value if value is not None else '-'} |" for key, value in provenance.items()],
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(content.config, indent=2),
        "```",
        "",
    ])
