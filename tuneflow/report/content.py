"""The run's report: gather what it shows from the run folder, then write report.html, report.md and figures/.

Every number comes from files the earlier steps wrote (metrics.json, predictions.csv, history.csv, the
current model's predictions when the promote step re-evaluated it, and the model registry's version records for
the accuracy across retrainings); nothing here runs the model. How each page
looks is tuneflow.report.html's and tuneflow.report.markdown's; the report task (tasks/report.py) calls
`gather_report` and `write_run_report`, then publishes the dashboard artifacts.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.report import plots
from tuneflow.config import RetrainConfig
from tuneflow.formatting import percent
from tuneflow.report.history import VersionRow, history_figure, read_history
from tuneflow.report.html import MISTAKES_SHOWN, TYPICAL_PER_CLASS, ReportContent, Thumbnail, render_html, thumbnail_uri
from tuneflow.evaluation.metrics import Metrics, compute_metrics, read_predictions
from tuneflow.registry.promotion import PromotionDecision
from tuneflow.records import EvalResult, PreparedDataset, ReportFiles, TrainedModel
from tuneflow.report.markdown import render_markdown

REPORT_FILE = "report.md"
HTML_REPORT_FILE = "report.html"
FIGURES_FOLDER = "figures"
FIGURE_FILES = {
    "curves": "training_curves.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class.png",
    "calibration": "calibration.png",
    "history": "accuracy_history.png",
}


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
        caption = f"{row.true_class} → {row.predicted_class} ({percent(row.confidence, 0)})" if with_classes else f"{percent(row.confidence, 0)} sure"
        thumbnails.append(Thumbnail(uri=uri, caption=caption, detail=row.path))
    return thumbnails


def training_summary(config: RetrainConfig, trained: TrainedModel) -> dict:
    """The settings and timings a reader compares between runs: every field of the training record but paths,
    the precision and XLA requested beside what was applied."""
    requested = config.training.model_dump(mode="json")
    # What was asked for beside what training used (the record's precision, xla_applied): they differ by design
    # (precision=auto) or because a request could not be honoured.
    requested["precision_requested"] = requested.pop("precision")
    requested["jit_compile_requested"] = requested.pop("jit_compile")
    return {
        **requested,
        "seed": config.seed,
        "val_fraction": config.data.val_fraction,
        **trained.model_dump(mode="json", exclude={"model_path", "history_path", "classes"}),
    }


def draw_figures(history: pd.DataFrame, metrics: Metrics, current: Metrics | None,
                 versions: list[VersionRow]) -> dict[str, Figure]:
    """Every figure of the report, by its name in FIGURE_FILES (no history chart before a version is stored)."""
    figures = {
        "curves": plots.training_curves(history),
        "confusion": plots.confusion_heatmap(metrics),
        "per_class": plots.per_class_bars(metrics, current),
        "calibration": plots.reliability_diagram(metrics),
    }
    if (chart := history_figure(versions)) is not None:
        figures["history"] = chart
    return figures


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
    baseline = decision.baseline if decision else None
    # The model in use is scored only on photos it never trained on: when there were none, it has no metrics here.
    if baseline and baseline.predictions_path and baseline.comparison and baseline.comparison.compared:
        current_metrics = compute_metrics(read_predictions(baseline.predictions_path), baseline.classes)
    versions = read_history(config.data_root)
    figures = draw_figures(history, metrics, current_metrics, versions)
    typical = select_typical(predictions, metrics.classes)
    return ReportContent(
        run_id=run_dir.name,
        metrics=metrics,
        decision=decision,
        current_metrics=current_metrics,
        history=history,
        figures={name: plots.png(figure) for name, figure in figures.items()},
        mistakes=make_thumbnails(select_mistakes(predictions), dataset.root, with_classes=True),
        typical={name: make_thumbnails(rows, dataset.root, with_classes=False) for name, rows in typical.items()},
        dataset=dataset,
        archive=archive,
        training=training_summary(config, trained),
        config=config.model_dump(mode="json"),
        versions=versions,
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
