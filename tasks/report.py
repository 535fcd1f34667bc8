"""Report step: write the run's report (tuneflow.report.content) and publish the Prefect dashboard artifacts.

Artifact keys are fixed per dataset (tasks.dashboard), so each run of a deployment adds a version to the same
artifacts and the dashboard shows their history: the report with its figures embedded, a table of per-class
metrics, where report.html is, and the accuracy of every model version so far. A failed artifact is logged and
the report files stay written.
"""

from __future__ import annotations

import socket
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.config import RetrainConfig
from tuneflow.formatting import percent
from tuneflow.report.dashboard import ReportLocation, compact_png, locate_report, location_markdown, render_dashboard_report
from tuneflow.report.history import VersionRow, render_history_markdown
from tuneflow.report.html import ReportContent, png_uri
from tuneflow.registry.promotion import PromotionDecision
from tuneflow.records import EvalResult, PreparedDataset, ReportFiles, TrainedModel
from tuneflow.report.content import gather_report, write_run_report
from tuneflow.report.markdown import per_class_rows
from tuneflow.tasks.dashboard import ArtifactKeys, best_effort


def publish_artifacts(content: ReportContent, location: ReportLocation, keys: ArtifactKeys) -> None:
    """The dashboard: the report, the per-class table, where report.html is, the history, each under its key."""
    logger = get_run_logger()
    metrics, decision = content.metrics, content.decision
    verdict = "" if decision is None else ("; promoted" if decision.promoted else "; not promoted")
    description = f"tuneflow run {content.run_id}: validation accuracy {percent(metrics.accuracy)}{verdict}"
    report = render_dashboard_report(content, location)
    best_effort("report", create_markdown_artifact, key=keys.key("report"), markdown=report.markdown,
                description=description)
    logger.info("%s artifact: %s kB with its figures embedded%s", keys.key("report"),
                f"{report.size_bytes / 1000:,.0f}",
                f"; left out to stay small: {', '.join(report.left_out)}" if report.left_out else "")
    best_effort(
        "per-class table",
        create_table_artifact,
        key=keys.key("per-class-metrics"),
        table=per_class_rows(metrics, content.current_metrics),
        description=f"{description}. Per-class precision, recall, F1 on the validation images.",
    )
    # Markdown whether or not there is a URL (one artifact type per key): a link when the run folders are served,
    # else where the file is and how to get it (a file:// link would open only on the worker itself).
    best_effort("report location", create_markdown_artifact, key=keys.key("report-html"),
                markdown=location_markdown(location), description=f"{description}. Where the full report is.")
    if content.versions:
        publish_history(content.versions, content.figures.get("history"), keys)


def publish_history(versions: list[VersionRow], chart: bytes | None, keys: ArtifactKeys) -> None:
    """The history artifact: every model version so far, from the registry, with its chart."""
    history = render_history_markdown(versions, png_uri(compact_png(chart)) if chart else None)
    best_effort("history", create_markdown_artifact, key=keys.key("history"), markdown=history,
                description=f"Accuracy of the {len(versions)} model versions so far, newest first")


@task(name="write-report", cache_policy=NO_CACHE)
def write_report(
    run_dir: Path,
    config: RetrainConfig,
    archive: FetchedArchive,
    dataset: PreparedDataset,
    trained: TrainedModel,
    evaluation: EvalResult,
    decision: PromotionDecision | None = None,
    keys: ArtifactKeys | None = None,
) -> ReportFiles:
    """Write report.html and report.md into the run folder and publish the dashboard artifacts."""
    content = gather_report(run_dir, config, archive, dataset, trained, evaluation, decision)
    files = write_run_report(content, run_dir)
    location = locate_report(files.html, run_dir.name, config.storage.report_base_url, socket.gethostname())
    publish_artifacts(content, location, keys or ArtifactKeys.for_dataset(config.dataset_name))
    return files
