"""The retraining flow: fetch -> prepare -> fine-tune -> evaluate -> promote -> report, one call per step."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import BaseModel

from tasks.evaluate import evaluate_model
from tasks.fetch import fetch_dataset, fetch_weights
from tasks.prepare import prepare
from tasks.promote import promote
from tasks.report import write_report
from tasks.train import fine_tune
from tuneflow.config import RetrainConfig
from tuneflow.runs import open_run_dir


class RunSummary(BaseModel):
    """What a retraining run produced: the flow's return value."""

    run_dir: Path
    accuracy: float
    model_path: Path
    report_path: Path
    html_report_path: Path
    weights: str
    model_version: str
    promoted: bool
    promotion_reason: str
    current_version: str | None


@flow(name="retrain", log_prints=True)
def retrain(config: RetrainConfig) -> RunSummary:
    """Fine-tune ResNet50 on the configured dataset.zip, report how well it does and promote it if it is better."""
    run_dir = open_run_dir(config.data_root, config.resume_run_id)
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")

    archive = fetch_dataset(config.source, config.drive, config.data_root)
    weights_path = fetch_weights(config.training.weights, config.drive, config.data_root)
    dataset = prepare(archive.path, run_dir / "dataset", config.data, config.seed)
    trained = fine_tune(dataset, config.training, weights_path, config.seed, run_dir)
    evaluation = evaluate_model(trained, dataset, archive, run_dir)
    decision = promote(trained, evaluation, dataset, config.promotion, config.data_root, run_dir)
    report = write_report(run_dir, config, archive, dataset, trained, evaluation, decision)

    return RunSummary(
        run_dir=run_dir,
        accuracy=evaluation.accuracy,
        model_path=trained.model_path,
        report_path=report.markdown,
        html_report_path=report.html,
        weights=config.training.weights,
        model_version=decision.version,
        promoted=decision.promoted,
        promotion_reason=decision.reason,
        current_version=decision.current_version,
    )
