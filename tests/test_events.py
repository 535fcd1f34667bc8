"""The events the training process sends its supervisor: every kind survives the wire, and a line that is no
readable event is logged with its text while supervision goes on."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Annotated, Union, get_args, get_origin

from tests.records import training_record
from tuneflow.events import (
    Compiled, EpochFinished, Notice, Output, PhotosDecoded, PhotosDecoding, PhotosReused, Progress, Resumed,
    TrainingDone, TrainingEvent, TrainingStarted, UnreadableEvent, WaitingForWorkers, parse_event, read_event_line,
)
from tuneflow.tasks.train import log_event
from tuneflow.training.process import describe_event, relay_events

RESULT = training_record(model_path="runs/r1/model.keras", classes=["apple_pie", "pizza"],
                         history_path="runs/r1/history.csv", epochs_run=2)
ONE_OF_EACH = [
    TrainingStarted(devices=["/CPU:0"], replicas=1, precision="float32", workers=1, worker_index=0, train_images=24,
                    val_images=6, classes=["apple_pie", "pizza"], weights="random initialisation",
                    resumed_from_epoch=0, total_epochs=2),
    Notice(message="jit_compile is not applied when training across machines"),
    WaitingForWorkers(cluster={"worker": ["gpu-a:12345", "gpu-b:12345"]}, task={"type": "worker", "index": 0}),
    Resumed(epochs_done=1, phase="head"),
    Progress(epochs_done=1.5, total_epochs=2),
    EpochFinished(epoch=2, phase="fine-tune", loss=0.9, accuracy=0.5, val_loss=1.0, val_accuracy=0.4, seconds=3.2,
                  total_epochs=2),
    PhotosReused(name="val", images=6),
    PhotosDecoding(name="train", images=20, reused=4, step=2, done=10),
    PhotosDecoded(name="train", images=24, decoded=20, reused=4),
    TrainingDone(result=RESULT),
    Compiled(phase="head", precision="mixed_bfloat16", xla_applied=False, warning=True,
             reason="not applied when training across machines"),
]


def event_models(annotation) -> set[type]:
    """Every model of a (nested) discriminated union."""
    if get_origin(annotation) is Annotated:
        return event_models(get_args(annotation)[0])
    if get_origin(annotation) is Union:
        return set().union(*map(event_models, get_args(annotation)))
    return {annotation}


def test_every_event_kind_reads_back_as_it_was_sent():
    assert {type(event) for event in ONE_OF_EACH} == event_models(TrainingEvent)  # one of each: none left out
    for event in ONE_OF_EACH:
        line = event.model_dump_json()
        assert parse_event(line) == event and read_event_line(line + "\n") == event


def test_lines_in_the_untyped_format_of_earlier_versions_still_read():
    old_epoch = {"event": "epoch", "epoch": 1, "phase": "head", "loss": 1.1, "accuracy": 0.3, "val_loss": 1.2,
                 "val_accuracy": 0.25, "seconds": 4.5, "total_epochs": 2}
    old_done = {"event": "done", "result": RESULT.model_dump(mode="json")}
    assert read_event_line(json.dumps(old_epoch)) == EpochFinished(**{**old_epoch, "event": "epoch"})
    assert read_event_line(json.dumps(old_done)) == TrainingDone(result=RESULT)
    assert read_event_line("Epoch 1/2\n") == Output(line="Epoch 1/2")  # a library printing: not an event


def test_a_malformed_line_and_an_unknown_event_are_logged_with_their_text_and_supervision_goes_on(tmp_path, caplog):
    """A child process that sends, between real events, a line cut short, an event of a kind this version does
    not know, and a known kind missing its fields (which the untyped protocol failed on with a KeyError)."""
    cut_short = '{"event": "epoch", "epoch": 1, "pha'
    unknown = '{"event": "teleport", "to": "mars"}'
    missing_fields = '{"event": "epoch", "epoch": 1}'
    sent = [Progress(epochs_done=0.5, total_epochs=2).model_dump_json(), cut_short, unknown, missing_fields,
            ONE_OF_EACH[5].model_dump_json(), TrainingDone(result=RESULT).model_dump_json()]
    child = subprocess.Popen([sys.executable, "-c", f"print({chr(10).join(sent)!r})"], stdout=subprocess.PIPE,
                             text=True)
    received = []
    assert relay_events(child, received.append, 60, tmp_path) == RESULT
    assert child.wait() == 0
    assert received[0] == Progress(epochs_done=0.5, total_epochs=2) and received[4:] == [ONE_OF_EACH[5],
                                                                                        TrainingDone(result=RESULT)]
    unreadable = received[1:4]
    assert [event.line for event in unreadable if isinstance(event, UnreadableEvent)] == [cut_short, unknown,
                                                                                         missing_fields]
    assert "Invalid JSON" in unreadable[0].problem and "'teleport'" in unreadable[1].problem
    assert "phase: Field required" in unreadable[2].problem

    logger = logging.getLogger("tuneflow.test.fine-tune")
    with caplog.at_level(logging.DEBUG, logger.name):
        for event in received:
            log_event(logger, event)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 3 and all(event.line in warning for event, warning in zip(unreadable, warnings))
    infos = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert infos == [describe_event(ONE_OF_EACH[5])]  # the epoch after them: "fine-tune epoch 2/2: loss 0.9000, ..."
