"""Supervising the training process: start `python -m tuneflow.training.worker JOB.json`, relay its events, stop it.

The process is stopped (its whole process group) whenever supervision ends early: a timeout, an exception, the
caller being cancelled. A restarted run continues from the run folder's last checkpoint. Plain Python: the
fine-tune task (tasks/train.py) turns the events into Prefect logs and a progress artifact.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tuneflow.child_process import child_environment, python_module_command, stop_process_group
from tuneflow.events import (
    Compiled, EpochFinished, Notice, Output, PhotosDecoded, PhotosDecoding, PhotosReused, ReceivedEvent, Resumed,
    TimeLimitChanged, TrainingDone, TrainingStarted, UnreadableEvent, WaitingForWorkers, read_event_line,
)
from tuneflow.records import TrainedModel
from tuneflow.training.time_limit import TrainingTimeLimit
from tuneflow.training.worker import TrainingJob

JOB_FILE = "train_job.json"
LOG_FILE = "train.log"
PID_FILE = "train.pid"
LOG_TAIL_LINES = 30


class TrainingFailed(RuntimeError):
    """The training process exited with an error; the message carries the end of its log."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_training_process(
    job: TrainingJob,
    on_event: Callable[[ReceivedEvent], None],
    timeout_seconds: float | None = None,
    env: dict[str, str] | None = None,
    time_limit: TrainingTimeLimit | None = None,
) -> TrainedModel:
    """Run tuneflow.training.worker on the job; call on_event for each event; stop it on timeout or any exit.

    `timeout_seconds` is a fixed limit; `time_limit` one that follows the training's measured speed, each change
    of it passed to on_event as a TimeLimitChanged.
    """
    run_dir = job.run_dir
    job_path = run_dir / JOB_FILE
    job_path.write_text(job.model_dump_json(indent=2))
    log_path = run_dir / LOG_FILE
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            python_module_command("tuneflow.training.worker", str(job_path)),
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # its own process group, so stopping it stops anything it started
            # TensorFlow's INFO lines in train.log: "Compiled cluster using XLA" there is the proof XLA really ran.
            env=child_environment({"TF_CPP_MIN_LOG_LEVEL": "0", **(env or {})}),
            text=True,
        )
    (run_dir / PID_FILE).write_text(f"{process.pid}\n")
    try:
        result = relay_events(process, on_event, timeout_seconds, run_dir, time_limit)
        process.wait()
    finally:
        stop_process_group(process)
    if process.returncode != 0:
        raise TrainingFailed(
            f"the training process exited with code {process.returncode}; the end of {log_path}:\n{log_tail(log_path)}"
        )
    if result is None:
        raise TrainingFailed(
            f"the training process exited without sending its result (a readable done event): see the warnings "
            f"about unreadable events in this run's log, and the end of {log_path}:\n{log_tail(log_path)}"
        )
    return result


def relay_events(
    process: subprocess.Popen, on_event: Callable[[ReceivedEvent], None], timeout_seconds: float | None,
    run_dir: Path, time_limit: TrainingTimeLimit | None = None,
) -> TrainedModel | None:
    """Call on_event with what each line of the process's stdout says, until it closes; the result it sent.

    A line that is no readable event reaches on_event as an UnreadableEvent (or Output): supervision goes on.
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdout() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_stdout, name="training-stdout", daemon=True).start()
    started = time.monotonic()
    deadline = started + timeout_seconds if timeout_seconds else None
    resume = f"Its checkpoints are in {run_dir}; continue with resume_run_id={run_dir.name!r}"
    result: TrainedModel | None = None
    while True:
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(
                f"training exceeded its timeout of {timeout_seconds:.0f} s; process {process.pid} was stopped. {resume}"
            )
        if time_limit and time.monotonic() - started > time_limit.limit_s:
            raise TimeoutError(f"{time_limit.exceeded_message(process.pid)}. {resume}")
        try:
            # A short wait keeps this loop responsive to timeouts and to Prefect cancelling the task.
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            return result
        event = read_event_line(line)
        if isinstance(event, TrainingDone):
            result = event.result
        on_event(event)
        if time_limit and (change := time_limit.observe(event, time.monotonic() - started)):
            on_event(TimeLimitChanged(message=change))


def describe_event(event: ReceivedEvent) -> str | None:
    """A log line for the events people want in the run's logs (epochs, start, resume); None for the rest."""
    match event:
        case TrainingStarted():
            resumed = f", resuming after epoch {event.resumed_from_epoch}" if event.resumed_from_epoch else ""
            machines = f", worker {event.worker_index} of {event.workers} machines" if event.workers > 1 else ""
            return (
                f"training on {', '.join(event.devices)} ({event.replicas} replica(s){machines}, {event.precision}): "
                f"{event.train_images} train / {event.val_images} val images, {len(event.classes)} classes, "
                f"weights {event.weights}, {event.total_epochs} epochs{resumed}"
            )
        case EpochFinished():
            metrics = ", ".join(
                f"{key} {value:.4f}"
                for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                if (value := getattr(event, key)) is not None
            )
            return f"{event.phase} epoch {event.epoch}/{event.total_epochs}: {metrics} ({event.seconds:.1f} s)"
        case Compiled():
            xla = "XLA applied" if event.xla_applied else "XLA not applied"
            return f"{event.phase} phase compiled: {xla} ({event.reason}); precision {event.precision}"
        case Resumed():
            return f"restored the checkpoint after epoch {event.epochs_done} (phase {event.phase})"
        case PhotosReused():
            return (f"decoded {event.name} photos: all {event.images} were decoded by an earlier run or attempt, "
                    "none to decode")
        case PhotosDecoded():
            return (f"decoded {event.name} photos: all {event.images} cached for the epochs to come ({event.decoded} "
                    f"decoded now, {event.reused} decoded by an earlier run or attempt)")
        case PhotosDecoding(done=done, step=step, images=images):
            # Decoding into the store: logged at its start and at each quarter, not at every progress event.
            if done == 0 or done * 4 // images != (done - step) * 4 // images:
                reused = f" ({event.reused} more decoded by an earlier run or attempt)" if event.reused else ""
                return f"decoding {event.name} photos into the cache: {done} of {images}{reused}"
            return None
        case WaitingForWorkers():
            hosts = [host for role in event.cluster.values() for host in role]
            return (
                f"TF_CONFIG describes {len(hosts)} machines ({', '.join(hosts)}); this is {event.task}. Waiting for "
                "all of them: on each other machine run `python -m tuneflow.training.worker <this run "
                "folder>/train_job.json` with its own TF_CONFIG"
            )
        case Notice() | TimeLimitChanged():
            return event.message
        case Output():
            return event.line
        case UnreadableEvent():
            return f"the training process sent an event this version cannot read ({event.problem}): {event.line}"
    return None
