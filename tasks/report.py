"""Report step: write the run's report (tuneflow.report) and publish the Prefect dashboard artifacts.

Artifact keys are fixed, so each scheduled run adds a version to the same three artifacts and the dashboard
shows their history: a markdown summary, a table of per-class metrics, a link to report.html.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tuneflow.archives import FetchedArchive
from tuneflow.config import RetrainConfig
from tuneflow.html_report import ReportContent
from tuneflow.promotion import PromotionDecision
from tuneflow.records import EvalResult, PreparedDataset, ReportFiles, TrainedModel
from tuneflow.report import gather_report, write_run_report
from tuneflow.report_markdown import per_class_rows, render_summary_markdown

SUMMARY_ARTIFACT_KEY = "retrain-report"
PER_CLASS_ARTIFACT_KEY = "retrain-per-class-metrics"
HTML_LINK_ARTIFACT_KEY = "retrain-report-html"


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
