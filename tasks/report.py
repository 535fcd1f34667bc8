"""Report step: report.html (self-contained), report.md with its figures, and the Prefect dashboard artifacts.

Every number comes from files the earlier steps wrote (metrics.json, predictions.csv, history.csv, and the
current model's predictions when the promote step re-evaluated it); nothing here runs the model.

Artifact keys are fixed, so each scheduled run adds a version to the same three artifacts and the dashboard
shows their history: a markdown summary, a table of per-class metrics, a link to report.html.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tuneflow.archives import FetchedArchive
from tuneflow.dataset.prepare import MANIFEST_NAME, counts_table
from tuneflow import plots
from tuneflow.config import RetrainConfig
from tuneflow.dataset import REASONS
from tuneflow.html_report import (
    MISTAKES_SHOWN,
    TYPICAL_PER_CLASS,
    ReportContent,
    Thumbnail,
    findings,
    headline_top_k,
    label,
    render_html,
    thumbnail_uri,
)
from tuneflow.metrics import Metrics, compute_metrics, read_predictions
from tuneflow.promotion import PromotionDecision
from tuneflow.records import EvalResult, PreparedDataset, ReportFiles, TrainedModel

REPORT_FILE = "report.md"
HTML_REPORT_FILE = "report.html"
FIGURES_FOLDER = "figures"
FIGURE_FILES = {
    "curves": "training_curves.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class.png",
    "calibration": "calibration.png",
}
SUMMARY_ARTIFACT_KEY = "retrain-report"
PER_CLASS_ARTIFACT_KEY = "retrain-per-class-metrics"
HTML_LINK_ARTIFACT_KEY = "retrain-report-html"


def select_mistakes(predictions: pd.DataFrame, limit: int = MISTAKES_SHOWN) -> pd.DataFrame:
    """The wrong predictions the model was most sure of."""
    wrong = predictions[predictions["true_class"] != predictions["predicted_class"]]
    return wrong.sort_values(["confidence", "path"], ascending=[False, True]).head(limit)


def select_typical(predictions: pd.DataFrame, classes: list[str], per_class: int = TYPICAL_PER_CLASS) -> dict[str, pd.DataFrame]:
    """Per class, the correctly classified images with the highest confidence: what the model thinks it looks like."""
    right = predictions[predictions["true_class"] == predictions["predicted_class"]]
    right = right.sort_values(["confidence", "path"], ascending=[False, True])
    return {name: right[right["true_class"] == name].head(per_class) for name in classes}


def make_thumbnails(rows: pd.DataFrame, dataset_root: Path, with_classes: bool) -> list[Thumbnail]:
    thumbnails = []
    for row in rows.itertuples():
        uri = thumbnail_uri(dataset_root / row.path)
        if uri is None:  # the run's dataset folder was cleaned up or damaged: leave the picture out, not a broken one
            continue
        caption = f"{row.true_class} → {row.predicted_class} ({row.confidence:.0%})" if with_classes else f"{row.confidence:.0%} sure"
        thumbnails.append(Thumbnail(uri=uri, caption=caption, detail=row.path))
    return thumbnails


def training_summary(config: RetrainConfig, trained: TrainedModel) -> dict:
    """The settings and timings a reader compares between runs: every field of the training record but paths."""
    return {
        **config.training.model_dump(mode="json"),
        "seed": config.seed,
        "val_fraction": config.data.val_fraction,
        **trained.model_dump(mode="json", exclude={"model_path", "history_path", "classes"}),
    }


def change_text(decision: PromotionDecision | None) -> str:
    if decision is None:
        return "-"
    if decision.baseline is None:
        return "first model: none was in use"
    if decision.accuracy_change is None:
        return f"not comparable: {decision.baseline.version} has other classes"
    return (f"{decision.accuracy_change * 100:+.1f} points against {decision.baseline.version} "
            f"({decision.baseline.accuracy:.2%} on the same images)")


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


def gather_report(
    run_dir: Path,
    config: RetrainConfig,
    archive: FetchedArchive,
    dataset: PreparedDataset,
    trained: TrainedModel,
    evaluation: EvalResult,
    decision: PromotionDecision | None,
) -> ReportContent:
    """Read the run's files and draw the figures: everything the report pages show."""
    metrics = Metrics.model_validate_json(evaluation.metrics_path.read_text())
    predictions = read_predictions(evaluation.predictions_path)
    history = pd.read_csv(trained.history_path)
    current_metrics = None
    if decision and decision.baseline and decision.baseline.predictions_path:
        current_metrics = compute_metrics(read_predictions(decision.baseline.predictions_path), decision.baseline.classes)
    figures = {
        "curves": plots.training_curves(history),
        "confusion": plots.confusion_heatmap(metrics),
        "per_class": plots.per_class_bars(metrics, current_metrics),
        "calibration": plots.reliability_diagram(metrics),
    }
    typical = select_typical(predictions, metrics.classes)
    return ReportContent(
        run_id=run_dir.name,
        metrics=metrics,
        decision=decision,
        current_metrics=current_metrics,
        history=history,
        figures=figures,
        mistakes=make_thumbnails(select_mistakes(predictions), dataset.root, with_classes=True),
        typical={name: make_thumbnails(rows, dataset.root, with_classes=False) for name, rows in typical.items()},
        dataset=dataset,
        archive=archive,
        training=training_summary(config, trained),
        config=config.model_dump(mode="json"),
    )


def write_run_report(content: ReportContent, run_dir: Path) -> ReportFiles:
    """report.html, report.md and figures/*.png in the run folder."""
    figures_dir = run_dir / FIGURES_FOLDER
    figures_dir.mkdir(exist_ok=True)
    figure_files = {}
    for name, png in content.figures.items():
        (figures_dir / FIGURE_FILES[name]).write_bytes(png)
        figure_files[name] = f"{FIGURES_FOLDER}/{FIGURE_FILES[name]}"
    markdown_path = run_dir / REPORT_FILE
    markdown_path.write_text(render_markdown(content, figure_files))
    html_path = run_dir / HTML_REPORT_FILE
    html_path.write_text(render_html(content), encoding="utf-8")
    return ReportFiles(html=html_path, markdown=markdown_path)


def publish_artifacts(content: ReportContent, files: ReportFiles) -> None:
    """The dashboard: summary markdown, per-class table, link to report.html, each under its fixed key."""
    metrics, decision = content.metrics, content.decision
    verdict = "" if decision is None else ("; promoted" if decision.promoted else "; not promoted")
    description = f"tuneflow run {content.run_id}: validation accuracy {metrics.accuracy:.2%}{verdict}"
    create_markdown_artifact(
        key=SUMMARY_ARTIFACT_KEY,
        markdown=render_summary_markdown(content.run_id, metrics, decision, files.html),
        description=description,
    )
    create_table_artifact(
        key=PER_CLASS_ARTIFACT_KEY,
        table=per_class_rows(metrics, content.current_metrics),
        description=f"{description}. Per-class precision, recall, F1 on the validation images.",
    )
    create_link_artifact(
        key=HTML_LINK_ARTIFACT_KEY,
        link=files.html.resolve().as_uri(),
        link_text=f"report.html of run {content.run_id}",
        description=f"{description}. The full report: plots, mistakes, data, settings (one self-contained file).",
    )


@task(name="write-report")
def write_report(
    run_dir: Path,
    config: RetrainConfig,
    archive: FetchedArchive,
    dataset: PreparedDataset,
    trained: TrainedModel,
    evaluation: EvalResult,
    decision: PromotionDecision | None = None,
) -> ReportFiles:
    """Write report.html and report.md into the run folder and publish the dashboard artifacts."""
    content = gather_report(run_dir, config, archive, dataset, trained, evaluation, decision)
    files = write_run_report(content, run_dir)
    publish_artifacts(content, files)
    return files
