"""The retraining flow: fetch -> prepare -> fine-tune -> evaluate -> promote -> report -> prune, one call per step.

A retry of a run (from the dashboard) reuses the steps that finished, up to evaluation (tasks.results).
"""

from __future__ import annotations

import os

from prefect import flow

from tuneflow.tasks.evaluate import evaluate_model
from tuneflow.tasks.fetch import fetch_dataset, fetch_weights
from tuneflow.tasks.prepare import prepare
from tuneflow.tasks.prune import prune_runs
from tuneflow.tasks.promote import promote
from tuneflow.tasks.report import write_report
from tuneflow.tasks.results import results_kept_in
from tuneflow.tasks.run_folder import find_earlier_run, open_run
from tuneflow.tasks.train import fine_tune
from tuneflow.tasks.dashboard import ArtifactKeys
from tuneflow.config import RetrainConfig
from tuneflow.records import RunSummary
from tuneflow.runs.folders import check_archive_of_run
from tuneflow.sources import parse_drive_source
from tuneflow.storage import DECODED_CACHE, PREPARED_CACHE, RUN_DATASET_FOLDER, check_data_root_persists


RUN_TIMEOUT_VARIABLE = "TUNEFLOW_RUN_TIMEOUT_HOURS"
DEFAULT_RUN_TIMEOUT_HOURS = 24.0


def run_timeout_seconds() -> float:
    """The whole run's time limit, from the worker's environment (prefect.yaml sets it; a flow's timeout is fixed
    when the flow is defined, so it cannot be a config field). Past it the run ends TimedOut and the failure alert
    fires; the training's own, tighter limit (training.timeout_factor) usually stops a hung training first."""
    text = os.environ.get(RUN_TIMEOUT_VARIABLE, "").strip()
    try:
        hours = float(text) if text else DEFAULT_RUN_TIMEOUT_HOURS
    except ValueError:
        raise ValueError(f"{RUN_TIMEOUT_VARIABLE}={text!r} is not a number of hours; set e.g. 24") from None
    if hours <= 0:
        raise ValueError(f"{RUN_TIMEOUT_VARIABLE}={text!r} must be more than 0 hours; set e.g. 24")
    return hours * 3600


def for_drive_upload(config: RetrainConfig, drive_file_id: str | None) -> RetrainConfig:
    """The config with its source replaced by the Drive file a new upload landed in (a folder upload has a new ID)."""
    if not drive_file_id:
        return config
    return RetrainConfig.model_validate({**config.model_dump(), "source": f"drive://{drive_file_id}"})


@flow(name="retrain", log_prints=True, timeout_seconds=run_timeout_seconds())
def retrain(
    config: RetrainConfig, drive_file_id: str | None = None, drive_revision: str | None = None
) -> RunSummary:
    """Fine-tune ResNet50 on the configured dataset.zip, report how well it does and promote it if it is better.

    `drive_file_id` and `drive_revision` come from the Drive sensor, which asks for one run per new revision:
    train on that file, and say so if Drive has moved on to a newer revision since the sensor saw it. A revision that
    already produced a model version is not trained again: the run ends at once, pointing at that version.
    """
    config = for_drive_upload(config, drive_file_id)
    # Before any step: a kept step's result storage is a folder under data_root, which a refused run must not create.
    check_data_root_persists(config.data_root, config.allow_ephemeral_data_root)
    keep = results_kept_in(config.data_root)  # where a retry of this run, on any worker, finds the finished steps
    keys = ArtifactKeys.for_dataset(config.dataset_name)
    watched_file = parse_drive_source(config.source)
    if drive_revision and watched_file and config.resume_run_id is None:
        if (earlier := keep(find_earlier_run)(config.data_root, watched_file, drive_revision)) is not None:
            print(earlier.promotion_reason)
            return earlier
    run_dir = keep(open_run)(config.data_root, config.resume_run_id, config.allow_ephemeral_data_root)
    archive = keep(fetch_dataset)(config.source, config.drive, config.data_root, keys)
    check_archive_of_run(run_dir, archive)  # before anything of a resumed run is overwritten
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    if drive_revision and archive.drive_revision != drive_revision:
        # Drive serves only the head revision: someone uploaded again after the sensor looked. Train on the
        # newest; the sensor's next tick triggers another run for it, which the concurrency limit queues.
        print(f"Drive revision {drive_revision} was replaced by {archive.drive_revision} before this run fetched it")
    weights_path = keep(fetch_weights)(config.training.weights, config.drive, config.data_root, keys)
    prepared_cache = config.data_root / PREPARED_CACHE if config.storage.reuse_prepared else None
    dataset = keep(prepare)(archive.path, run_dir / RUN_DATASET_FOLDER, config.data, config.seed, prepared_cache,
                            archive.md5, keys)
    decoded_store = config.data_root / DECODED_CACHE if config.storage.keep_decoded_photos else None
    trained = keep(fine_tune)(dataset, config.training, weights_path, config.seed, run_dir, decoded_store, keys)
    evaluation = keep(evaluate_model)(trained, dataset, archive, run_dir, decoded_store)
    decision = promote(trained, evaluation, dataset, config.promotion, config.serving, config.data_root, run_dir,
                       archive, decoded_store)
    report = write_report(run_dir, config, archive, dataset, trained, evaluation, decision, keys)
    prune_runs(config.data_root, config.storage.keep_runs)

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
