"""What the training process tells the task that supervises it: one typed event per line of its stdout.

The process (tuneflow.training.worker) prints each event as one JSON object, `{"event": "<kind>", ...}`; its
supervisor (tuneflow.training.process) reads each line back into the same model with `read_event_line`. A line
that is not an event this version knows (malformed JSON, an unknown kind, a missing field) becomes an
`UnreadableEvent` carrying its text, which the task logs as a warning: never a crash of the supervision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tuneflow.records import TrainedModel


class Event(BaseModel):
    """One thing the training process reports; a sent event does not change."""

    model_config = ConfigDict(frozen=True)


class PlannedPhase(BaseModel):
    """One phase of the recipe as the training plans it (epochs numbered from 0 across phases)."""

    name: str
    first_epoch: int
    epochs: int


class TrainingStarted(Event):
    """The model is built and the data ready: what trains where, from which epoch."""

    event: Literal["start"] = "start"
    devices: list[str]
    replicas: int
    precision: str
    workers: int
    worker_index: int
    train_images: int
    val_images: int
    classes: list[str]
    weights: str  # a file, or "random initialisation"
    resumed_from_epoch: int
    total_epochs: int
    phases: list[PlannedPhase] = Field(default_factory=list)  # empty from a process older than the time limit


class Notice(Event):
    """Something the user asked for that was not applied, or should know: logged as a warning."""

    event: Literal["notice"] = "notice"
    message: str


class Compiled(Event):
    """A phase's training step was compiled: the precision it runs in and whether XLA compiles it, read back from
    the compiled model, and why."""

    event: Literal["compiled"] = "compiled"
    phase: str
    precision: str
    xla_applied: bool
    reason: str
    warning: bool  # XLA was wanted (asked for, or auto where a GPU trains) and is not applied: logged as a warning


class WaitingForWorkers(Event):
    """TF_CONFIG names several machines; creating the strategy blocks until all of them have connected."""

    event: Literal["waiting-for-workers"] = "waiting-for-workers"
    cluster: dict[str, list[str]]  # role -> host:port of each machine
    task: dict[str, str | int]  # this machine's {"type": ..., "index": ...}


class Resumed(Event):
    """The checkpoint after `epochs_done` was restored."""

    event: Literal["resumed"] = "resumed"
    epochs_done: int
    phase: str


class Progress(Event):
    """Within an epoch: how far training is, in epochs (fractional)."""

    event: Literal["progress"] = "progress"
    epochs_done: float
    total_epochs: int


class EpochFinished(Event):
    """An epoch ended (numbered from 1 across phases) and its checkpoint is on disk."""

    event: Literal["epoch"] = "epoch"
    epoch: int
    phase: str
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float
    total_epochs: int


class PhotosReused(Event):
    """Every photo of the split was already in the decoded store: nothing to decode."""

    event: Literal["cache"] = "cache"
    state: Literal["reused"] = "reused"
    name: str  # the split: "train" or "val"
    images: int


class PhotosDecoding(Event):
    """Decoding into the store is under way (in the first epoch, or in a pass before it): `done` of `images` photos
    decoded, `step` of them since the last report."""

    event: Literal["cache"] = "cache"
    state: Literal["decoding"] = "decoding"
    name: str
    images: int  # photos this pass decodes
    reused: int  # photos of the split already in the store
    step: int
    done: int


class PhotosDecoded(Event):
    """Decoding finished: every photo of the split is in the store."""

    event: Literal["cache"] = "cache"
    state: Literal["complete"] = "complete"
    name: str
    images: int
    decoded: int
    reused: int


class TrainingDone(Event):
    """The last event of a successful run: where the model is and how training went."""

    event: Literal["done"] = "done"
    result: TrainedModel


# The decoded store's events share one kind, "cache", told apart by their state.
DecodedStoreEvent = Annotated[Union[PhotosReused, PhotosDecoding, PhotosDecoded], Field(discriminator="state")]
TrainingEvent = Annotated[
    Union[TrainingStarted, Notice, Compiled, WaitingForWorkers, Resumed, Progress, EpochFinished, DecodedStoreEvent,
          TrainingDone],
    Field(discriminator="event"),
]
Emit = Callable[[TrainingEvent], None]

_EVENTS: TypeAdapter[TrainingEvent] = TypeAdapter(TrainingEvent)


class Output(BaseModel):
    """A line the training process printed that is not meant as an event (a library writing to stdout)."""

    line: str


class TimeLimitChanged(BaseModel):
    """Not from the process: its supervisor derived a new time limit from the speed the process showed."""

    message: str


class UnreadableEvent(BaseModel):
    """A line meant as an event that this version cannot read: its text, and what was wrong with it."""

    line: str
    problem: str


# What the supervisor hands on for each line of the process's stdout.
ReceivedEvent = Union[TrainingEvent, Output, UnreadableEvent, TimeLimitChanged]


def parse_event(text: str) -> TrainingEvent:
    """The event a JSON line describes; raises pydantic.ValidationError for bad JSON or an unknown kind."""
    return _EVENTS.validate_json(text)


def read_event_line(line: str) -> ReceivedEvent:
    """What a line of the training process's stdout says; never raises."""
    text = line.rstrip("\r\n")
    # Events are JSON objects; anything else is output some library printed, as it was before events had types.
    if not text.lstrip().startswith("{"):
        return Output(line=text)
    try:
        return parse_event(text)
    except ValidationError as error:
        problems = [
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
            for e in error.errors(include_url=False)
        ]
        return UnreadableEvent(line=text, problem="; ".join(problems[:3]))
