"""Promote step: keep the new model as a version and put it into use only if it beats the model in use."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from tuneflow.fetch.archives import FetchedArchive
from tuneflow.config import PromotionSettings, ServingSettings
from tuneflow.registry.promotion import PromotionDecision, promote_trained_model, promotion_event
from tuneflow.records import EvalResult, PreparedDataset, TrainedModel


@task(name="promote-model", cache_policy=NO_CACHE)
def promote(
    trained: TrainedModel,
    evaluation: EvalResult,
    dataset: PreparedDataset,
    settings: PromotionSettings,
    serving: ServingSettings,
    data_root: Path,
    run_dir: Path,
    archive: FetchedArchive,
    decoded_store: Path | None = None,
) -> PromotionDecision:
    """Keep the new model as a version and make it current if it beats the model in use on photos it never saw;
    export a model put into use for TF Serving, and announce it (tuneflow.model.promoted)."""
    logger = get_run_logger()
    decision = promote_trained_model(trained, evaluation, dataset, settings, serving, data_root, run_dir, archive,
                                     logger.info, decoded_store)
    logger.info(decision.summary)
    if (event := promotion_event(decision)) is not None:
        # Queued for the server, where the model-promoted automation alerts; the run's own resources (flow run,
        # deployment) are attached by Prefect, so the message can name them.
        emit_event(**event)
    return decision
