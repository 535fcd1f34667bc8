"""The dashboard's artifacts: keys that belong to one dataset, and updates that never fail the step they show.

Prefect's artifact keys are server-wide: two retrain deployments writing `retrain-report` would share one history.
Every key here is `tuneflow-<dataset name>-<what>`, and each key always holds the same artifact type
(ARTIFACT_TYPES), so its history in the dashboard is one dataset's and reads the same from run to run.

An artifact shows a step; it is not the step's result. A failed update (the API down, or answering errors after
the client's retries) is logged as a warning and the step goes on.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Literal, TypeVar
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

# One artifact type per key: the dashboard shows a key's history as one series.
ARTIFACT_TYPES: dict[str, Literal["markdown", "table", "progress"]] = {
    "dataset-download": "progress",
    "weights-download": "progress",
    "dataset-counts": "table",
    "dataset-manifest": "table",
    "training-progress": "progress",
    "report": "markdown",
    "per-class-metrics": "table",
    "report-html": "markdown",
    "history": "markdown",
}
NAME_MAX_CHARS = 40
# The client's default (5 retries, backing off up to 32 s) would hold a step up for about a minute per failed
# update; a dashboard update is not worth that. One retry rides out a dropped connection.
DASHBOARD_CLIENT_RETRIES = 1
# After a failed progress update the next ones wait this long: an API outage then costs a download or a training
# one failed call per interval instead of one per update.
PROGRESS_RETRY_AFTER_S = 120.0
# The name of the keys of runs not started from a deployment (the CLI, tests) that set no dataset name.
LOCAL_RUNS_NAME = "local"


def key_name(name: str) -> str:
    """A dataset or deployment name as an artifact key allows it: lowercase ASCII letters, digits, single dashes.

    Accents are dropped ("Crème brûlée" -> "creme-brulee"); a name with no such character left (a name in
    Japanese script) becomes a short hash of itself, so two such names still differ.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:NAME_MAX_CHARS].strip("-")
    return slug or hashlib.sha1(name.encode()).hexdigest()[:10]


class ArtifactKeys(BaseModel):
    """The artifact keys of one dataset: `tuneflow-<name>-<what>` for each `what` in ARTIFACT_TYPES."""

    model_config = ConfigDict(frozen=True)

    name: str

    @classmethod
    def for_dataset(cls, dataset_name: str | None) -> ArtifactKeys:
        """Keys for the config's dataset_name; unset, the deployment's name (one deployment, one history)."""
        if dataset_name is None:
            from prefect.runtime import deployment

            dataset_name = deployment.name or LOCAL_RUNS_NAME
        return cls(name=key_name(dataset_name))

    def key(self, what: str) -> str:
        if what not in ARTIFACT_TYPES:
            raise KeyError(f"no artifact {what!r}; the artifacts are {sorted(ARTIFACT_TYPES)}")
        return f"tuneflow-{self.name}-{what}"

    def all(self) -> dict[str, str]:
        """Every key, by what it shows."""
        return {what: self.key(what) for what in ARTIFACT_TYPES}


def keys_of_run(keys: ArtifactKeys | None) -> ArtifactKeys:
    """The keys a step was given, or, for a step called on its own, those of the deployment it runs in."""
    return keys if keys is not None else ArtifactKeys.for_dataset(None)


def step_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run, this module's logger outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def best_effort(what: str, call: Callable[..., T], *args, **kwargs) -> T | None:
    """`call(*args, **kwargs)`, a dashboard update; when it fails, a warning naming `what`, and None."""
    try:
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: DASHBOARD_CLIENT_RETRIES}):
            return call(*args, **kwargs)
    except Exception as error:  # whatever the client raises, the step it describes goes on
        step_logger().warning("the dashboard's %s was not updated (%s: %s); the step goes on without it", what,
                              type(error).__name__, error)
        return None


class ProgressBar:
    """A progress artifact, created on the first update and moved by the next ones, each on a best-effort basis."""

    def __init__(self, key: str, what: str) -> None:
        self.key, self.what = key, what
        self.artifact_id: UUID | None = None
        self.paused_until = 0.0

    def update(self, percent: float, description: str | None = None) -> None:
        if time.monotonic() < self.paused_until:
            return
        if self.artifact_id is None:
            self.artifact_id = best_effort(self.what, create_progress_artifact, progress=percent, key=self.key,
                                           description=description)
            done = self.artifact_id is not None
        else:
            done = best_effort(self.what, update_progress_artifact, self.artifact_id, percent,
                               description=description) is not None
        if not done:
            self.paused_until = time.monotonic() + PROGRESS_RETRY_AFTER_S
