"""Report step: report.md (with a training-curve plot) in the run folder, published as a Prefect artifact."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from prefect import task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from tasks.evaluate import EvalResult  # noqa: E402
from tasks.fetch import FetchedArchive  # noqa: E402
from tasks.prepare import MANIFEST_NAME, PreparedDataset, counts_table  # noqa: E402
from tasks.train import TrainedModel  # noqa: E402
from tuneflow.config import RetrainConfig  # noqa: E402
from tuneflow.dataset import REASONS  # noqa: E402

REPORT_FILE = "report.md"
CURVES_FILE = "training_curves.png"
REPORT_ARTIFACT_KEY = "retrain-report"


def plot_training_curves(history: pd.DataFrame, destination: Path) -> Path:
    """Loss and accuracy per epoch, training against validation, phases marked."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(history["epoch"], history[metric], marker="o", label="train")
        axis.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="validation")
        for _, group in history.groupby("phase", sort=False):
            if group["epoch"].min() > 1:
                axis.axvline(group["epoch"].min() - 0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
    accuracy_axis.set_ylim(0, 1.02)
    accuracy_axis.legend()
    figure.tight_layout()
    figure.savefig(destination, dpi=110)
    plt.close(figure)
    return destination


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


def render_report(
    run_id: str,
    config: RetrainConfig,
    archive: FetchedArchive,
    dataset: PreparedDataset,
    trained: TrainedModel,
    metrics: dict,
    history: pd.DataFrame,
    curves_file: str | None,
) -> str:
    """The whole report as markdown: headline, per-class metrics, confusion matrix, training, data, settings."""
    classes = metrics["classes"]
    per_class = pd.DataFrame(metrics["per_class"]).T[["precision", "recall", "f1", "support"]]
    per_class["support"] = per_class["support"].astype(int)
    confusion = pd.DataFrame(metrics["confusion_matrix"]["counts"], index=classes, columns=classes)
    confusion.index.name = "true \\ predicted"
    provenance = {
        "source": archive.source,
        "archive MD5": archive.md5,
        "archive size (bytes)": archive.size_bytes,
        "Drive file ID": archive.drive_file_id or "-",
        "Drive revision": archive.drive_revision or "-",
    }
    weights = config.training.weights
    lines = [
        f"# Retraining run {run_id}",
        "",
        f"**Validation accuracy: {metrics['accuracy']:.2%}** ({metrics['num_correct']} of {metrics['num_images']} "
        f"images), {len(classes)} classes, ResNet50 from **{'random initialisation' if weights == 'none' else weights}** "
        f"weights, {trained.epochs_run} epochs in {trained.seconds:.0f} s.",
        "",
        "## Per class",
        "",
        per_class.to_markdown(floatfmt=".3f"),
        "",
        "## Confusion matrix",
        "",
        confusion.to_markdown(),
        "",
        "## Training",
        "",
        *([f"![training curves]({curves_file})", ""] if curves_file else []),
        history.to_markdown(index=False, floatfmt=".4f"),
        "",
        "## Data",
        "",
        *data_section(dataset),
        "",
        "| provenance | value |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in provenance.items()],
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(config.model_dump(mode="json"), indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_run_report(
    run_dir: Path,
    config: RetrainConfig,
    archive: FetchedArchive,
    dataset: PreparedDataset,
    trained: TrainedModel,
    evaluation: EvalResult,
) -> tuple[Path, str]:
    """Write report.md and its plot into the run folder; returns the path and the markdown."""
    history = pd.read_csv(trained.history_path)
    metrics = json.loads(evaluation.metrics_path.read_text())
    curves = plot_training_curves(history, run_dir / CURVES_FILE)
    markdown = render_report(run_dir.name, config, archive, dataset, trained, metrics, history, curves.name)
    report_path = run_dir / REPORT_FILE
    report_path.write_text(markdown)
    return report_path, markdown


@task(name="write-report")
def write_report(
    run_dir: Path,
    config: RetrainConfig,
    archive: FetchedArchive,
    dataset: PreparedDataset,
    trained: TrainedModel,
    evaluation: EvalResult,
) -> Path:
    """Write report.md into the run folder and publish it as the run's markdown artifact."""
    report_path, markdown = write_run_report(run_dir, config, archive, dataset, trained, evaluation)
    create_markdown_artifact(
        key=REPORT_ARTIFACT_KEY,
        markdown=markdown.replace(f"]({CURVES_FILE})", f"]({run_dir / CURVES_FILE})"),
        description=f"tuneflow run {run_dir.name}: validation accuracy {evaluation.accuracy:.2%}",
    )
    return report_path
