"""The Drive sensor: notice a new revision of dataset.zip on Google Drive and start one retraining run for it.

Self-hosted Prefect has no webhooks and Drive push notifications need a public HTTPS endpoint, so the
`watch-drive` deployment polls: each tick reads the watched file's metadata (or finds the newest `dataset.zip`
in a watched folder) and compares it with the last revision it saw (a Prefect Variable). For a new revision it
asks the server for a run of the retrain deployment, with the file ID and revision as parameters and
`<deployment>/<file id>/<revision>` as the run's idempotency key, then emits a `tuneflow.dataset.uploaded` event
for whoever else listens, and only then records the revision.

The request is what makes this safe: the server answers it (or the call raises), and it keeps one run per
idempotency key for good, so a tick that failed anywhere before recording asks again next time and a repeated
request starts nothing. An event alone could not do that: `emit_event` only queues it, and a send that fails is
logged and dropped.

The decision is plain Python (`decide`); the tasks only read Drive, read/write the Variable, ask for the run and
emit the event.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneflow.config import DriveSettings
from tuneflow.fetch.drive import DriveError, DriveFile, DriveTransientError, find_watched_file
from tuneflow.sources import FILE_ID_PATTERN, parse_drive_source
from tuneflow.tasks.fetch import load_drive_key  # the key lookup (file, env, Secret block) the retrain flow uses

EVENT_NAME = "tuneflow.dataset.uploaded"
# Fixed namespace: the same file ID and revision always give the same event id, on every machine, so a sensor
# run retried after emitting (or two overlapping runs) produce one event as long as the server remembers its id.
EVENT_NAMESPACE = uuid.UUID("5b0f8f57-8d7e-4b8e-9a53-2a3c1f0e7d11")
STATE_VARIABLE_PREFIX = "tuneflow-drive-seen-"
FOLDER_LINK = re.compile(r"/folders/([A-Za-z0-9_-]+)")


class WatchDriveConfig(BaseModel):
    """What the sensor watches and how it reaches Drive."""

    model_config = ConfigDict(extra="forbid")

    file_id: str | None = Field(
        None,
        description="The Drive file to watch for new versions (Manage versions → Upload new version keeps its ID): "
        "an ID, drive://ID or a share link. Give this or folder_id.",
    )
    folder_id: str | None = Field(
        None,
        description="A Drive folder to watch instead: the newest file called `title` in it counts (dropping a new "
        "dataset.zip there creates a new file ID).",
    )
    title: str = Field("dataset.zip", min_length=1, description="File name looked for in folder_id.")
    trigger_on_first_run: bool = Field(
        False,
        description="On the very first run (no revision seen yet) also start a retraining, so the current file is "
        "trained on at once. Off: the first run only records a baseline.",
    )
    state_variable: str | None = Field(
        None,
        description="Name of the Prefect Variable keeping the last revision seen. Unset: derived from what is "
        "watched, so two sensors watching different files never share one.",
        pattern=r"^[a-z0-9_-]+$",
    )
    retrain_deployment: str = Field(
        "retrain/retrain",
        description="The deployment (flow name/deployment name) a new revision starts a run of.",
        pattern=r"^[^/]+/[^/]+$",
    )
    drive: DriveSettings = Field(default_factory=DriveSettings, description="How Google Drive is reached.")

    @field_validator("file_id")
    @classmethod
    def _file_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if FILE_ID_PATTERN.fullmatch(value):
            return value
        file_id = parse_drive_source(value)  # a ValueError here lists the accepted forms
        if file_id is None:
            raise ValueError(f"file_id {value!r} is not a Drive file ID, drive://ID or Drive share link")
        return file_id

    @field_validator("folder_id")
    @classmethod
    def _folder_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if match := FOLDER_LINK.search(value):
            value = match.group(1)
        if not FILE_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"folder_id {value!r} is not a Drive folder ID or link "
                "(https://drive.google.com/drive/folders/FOLDER_ID)"
            )
        return value

    @model_validator(mode="after")
    def _one_target(self) -> WatchDriveConfig:
        if (self.file_id is None) == (self.folder_id is None):
            raise ValueError(
                "give exactly one of file_id (watch one file's versions) or folder_id (watch the newest "
                f"{self.title!r} in a folder); got "
                + ("both" if self.file_id else "neither (did TUNEFLOW_DRIVE_FILE_ID reach `prefect deploy`?)")
            )
        return self

    @property
    def target(self) -> str:
        """What is watched, in words."""
        return f"Drive file {self.file_id}" if self.file_id else f"{self.title!r} in Drive folder {self.folder_id}"

    @property
    def variable_name(self) -> str:
        if self.state_variable:
            return self.state_variable
        # Variable names are lowercase; Drive IDs are case-sensitive, so hash the target rather than lowercase it.
        watched = f"file:{self.file_id}" if self.file_id else f"folder:{self.folder_id}/{self.title}"
        return STATE_VARIABLE_PREFIX + hashlib.sha1(watched.encode()).hexdigest()[:16]


class SeenRevision(BaseModel):
    """The revision the sensor saw last (the Prefect Variable's value)."""

    file_id: str
    revision: str
    md5: str | None = None
    title: str = ""
    modified: str = ""

    @classmethod
    def of(cls, file: DriveFile) -> SeenRevision:
        return cls(file_id=file.id, revision=revision_of(file), md5=file.md5, title=file.title, modified=file.modified)


class Decision(BaseModel):
    """What one sensor tick concluded: whether to ask for a retraining, whether to record the revision."""

    retrain: bool
    record: bool
    reason: Literal["baseline", "first-sight-triggers", "new-revision", "unchanged"]


class WatchResult(BaseModel):
    """The sensor run's return value, as shown on the flow run page."""

    status: Literal["baseline", "new-revision", "unchanged", "nothing-there", "drive-unavailable"]
    target: str
    file_id: str | None = None
    revision: str | None = None
    retrain_run_id: str | None = None
    event_id: str | None = None
    message: str = ""


def revision_of(file: DriveFile) -> str:
    """Drive's head revision id; the MD5 stands in where Drive gives no revision (it always does for binaries)."""
    revision = file.revision or file.md5
    if not revision:
        raise ValueError(f"Drive file {file.id!r} ({file.title!r}) has neither a head revision nor an MD5")
    return revision


def decide(last: SeenRevision | None, current: DriveFile, trigger_on_first_run: bool) -> Decision:
    """Retrain for a revision (or, in a folder, a file) not seen before; the first sighting is a baseline."""
    if last is None:
        if trigger_on_first_run:
            return Decision(retrain=True, record=True, reason="first-sight-triggers")
        return Decision(retrain=False, record=True, reason="baseline")
    if (last.file_id, last.revision) == (current.id, revision_of(current)):
        return Decision(retrain=False, record=False, reason="unchanged")
    return Decision(retrain=True, record=True, reason="new-revision")


def upload_event_id(file_id: str, revision: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{file_id}/{revision}")


def retrain_idempotency_key(deployment: str, file_id: str, revision: str) -> str:
    """One retraining run per deployment and revision: the server keeps the run under this key for good."""
    return f"{deployment}/{file_id}/{revision}"


def upload_event(file: DriveFile, retrain_run_id: str | None = None) -> dict:
    """The keyword arguments of `emit_event` for a new revision, related to the retraining run it started.

    Raw values sit in their own resource labels: an automation's `{{ event.resource['gdrive.file-id'] }}` then
    renders exactly the ID (the resource id itself carries a prefix).
    """
    revision = revision_of(file)
    related = [{"prefect.resource.id": f"prefect.flow-run.{retrain_run_id}", "prefect.resource.role": "flow-run"}]
    return {
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": f"gdrive.file.{file.id}",
            "prefect.resource.name": file.title,
            "gdrive.file-id": file.id,
            "gdrive.revision": revision,
            "gdrive.md5": file.md5 or "",
        },
        "payload": {"title": file.title, "size": file.size, "modified": file.modified, "md5": file.md5,
                    "retrain_flow_run_id": retrain_run_id},
        "related": related if retrain_run_id else [],
        "id": upload_event_id(file.id, revision),
    }


# ------------------------------------------------------------------------------------------------------------
# Tasks: the edges (Drive, the Variable, the event bus)
# ------------------------------------------------------------------------------------------------------------


@task(name="read-drive-head")
def read_drive_head(config: WatchDriveConfig) -> DriveFile | None:
    """Read the watched file's metadata, or find the newest matching file in the watched folder."""
    # No task-level retries: a Drive outage is simply retried on the next tick of the schedule.
    return find_watched_file(
        config.drive,
        file_id=config.file_id,
        folder_id=config.folder_id,
        title=config.title,
        load_key=load_drive_key,
        logger=get_run_logger(),
    )


@task(name="load-last-seen")
def load_last_seen(variable_name: str) -> SeenRevision | None:
    """The revision recorded by the previous tick, if any."""
    from prefect.variables import Variable

    value = Variable.get(variable_name, default=None)
    return SeenRevision.model_validate(value) if value else None


@task(name="request-retrain", cache_policy=NO_CACHE)
def request_retrain(deployment: str, file: DriveFile) -> str:
    """Ask the server for a run of the retrain deployment on this revision; raises unless the server has one.

    The idempotency key makes the request safe to repeat: a revision already asked for returns its existing run.
    """
    from prefect.deployments import run_deployment

    revision = revision_of(file)
    try:
        run = run_deployment(
            deployment,
            parameters={"drive_file_id": file.id, "drive_revision": revision},
            idempotency_key=retrain_idempotency_key(deployment, file.id, revision),
            timeout=0,  # asked for, not waited on: the sensor's tick ends while the retraining runs on the gpu pool
            as_subflow=False,  # its own run: cancelling or cleaning up this tick must not touch the retraining
        )
    except ObjectNotFound:
        raise RuntimeError(
            f"no deployment {deployment!r} to ask for a retraining: deploy it (`prefect --no-prompt deploy --all`) "
            "or set the sensor's retrain_deployment to the retrain deployment's 'flow/deployment' name"
        ) from None
    get_run_logger().info("retraining run %r (%s) for revision %s of %s", run.name, run.id, revision, file.id)
    return str(run.id)


@task(name="emit-upload-event", cache_policy=NO_CACHE)
def emit_upload_event(file: DriveFile, retrain_run_id: str) -> str | None:
    """Tell whoever else listens that a new revision is there (the retraining is already asked for)."""
    from prefect.events import emit_event

    event = emit_event(**upload_event(file, retrain_run_id))
    return str(event.id) if event is not None else None


@task(name="remember-revision")
def remember_revision(variable_name: str, seen: SeenRevision) -> None:
    """Record the revision just handled, so the next tick compares against it."""
    from prefect.variables import Variable

    Variable.set(variable_name, seen.model_dump(), overwrite=True, tags=["tuneflow", "watch-drive"])


@flow(name="watch-drive", flow_run_name="watch-drive", log_prints=True)
def watch_drive(config: WatchDriveConfig) -> WatchResult:
    """Start one retraining run for each new revision of the watched dataset on Drive, and announce it with a
    `tuneflow.dataset.uploaded` event."""
    logger = get_run_logger()
    try:
        current = read_drive_head(config)
    except DriveTransientError as error:
        # Rate limits and outages pass: report, stay green, and the next tick tries again.
        logger.warning("Drive is unavailable for now (%s); the next tick will try again", error)
        return WatchResult(status="drive-unavailable", target=config.target, message=str(error))
    except DriveError as error:
        # A missing file, an unshared file or a bad key will not fix itself: fail this run visibly (the schedule
        # still runs the next tick, so fixing the sharing or the key is enough).
        logger.error("cannot watch %s: %s", config.target, error)
        raise

    if current is None:
        message = f"nothing to watch: {config.target} is missing or in the trash"
        logger.warning(message)
        return WatchResult(status="nothing-there", target=config.target, message=message)

    last = load_last_seen(config.variable_name)
    decision = decide(last, current, config.trigger_on_first_run)
    seen = SeenRevision.of(current)
    retrain_run_id = event_id = None
    if decision.retrain:
        # Asked for (and answered) before the revision is recorded: a tick that fails in between asks again next
        # time, and the idempotency key makes that second request return the run the first one started.
        retrain_run_id = request_retrain(config.retrain_deployment, current)
        event_id = emit_upload_event(current, retrain_run_id)
        logger.info("new revision %s of %s (%s): retraining run %s", seen.revision, current.title, current.id,
                    retrain_run_id)
    if decision.record:
        remember_revision(config.variable_name, seen)
    if decision.reason == "baseline":
        logger.info(
            "first look at %s: recorded revision %s as the baseline (no retraining)", config.target, seen.revision
        )
    elif decision.reason == "unchanged":
        logger.info("%s unchanged (revision %s)", config.target, seen.revision)

    status = {"baseline": "baseline", "unchanged": "unchanged"}.get(decision.reason, "new-revision")
    return WatchResult(status=status, target=config.target, file_id=current.id, revision=seen.revision,
                       retrain_run_id=retrain_run_id, event_id=event_id)
