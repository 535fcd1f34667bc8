"""Train step: fine-tune ResNet50 in a separate process, its progress streamed into the Prefect run.

The process is stopped (its whole process group) whenever this step ends early: a timeout, a cancelled flow, an
exception. A restarted run continues from the run folder's last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from tuneflow.child_process import child_environment, python_module_command
from tuneflow.config import TrainingSettings
from tuneflow.train_worker import TrainingJob
from tuneflow.records import PreparedDataset, TrainedModel

JOB_FILE = "train_job.json"
LOG_FILE = "train.log"
PID_FILE = "train.pid"
# How long a stopped training process gets to exit on SIGTERM before SIGKILL.
TERMINATE_GRACE_SECONDS = 10
LOG_TAIL_LINES = 30


class TrainingFailed(RuntimeError):
    """The training process exited with an error; the message carries the end of its log."""


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the training process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_training_process(
    job: TrainingJob,
    on_event: Callable[[dict], None],
    timeout_seconds: float | None = None,
    env: dict[str, str] | None = None,
) -> TrainedModel:
    """Run tuneflow.train_worker on the job; call on_event for each event; stop it on timeout or any exit."""
    run_dir = job.run_dir
    job_path = run_dir / JOB_FILE
    job_path.write_text(job.model_dump_json(indent=2))
    log_path = run_dir / LOG_FILE
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            python_module_command("tuneflow.train_worker", str(job_path)),
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # its own process group, so stopping it stops anything it started
            env=child_environment(env),
            text=True,
        )
    (run_dir / PID_FILE).write_text(f"{process.pid}\n")
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdout() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_stdout, name="training-stdout", daemon=True).start()
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    result: TrainedModel | None = None
    try:
        while True:
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(
                    f"training exceeded its timeout of {timeout_seconds:.0f} s; process {process.pid} was stopped. "
                    f"Its checkpoints are in {run_dir}; continue with resume_run_id={run_dir.name!r}"
                )
            try:
                # A short wait keeps this loop responsive to timeouts and to Prefect cancelling the task.
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                on_event({"event": "output", "line": line.rstrip()})
                continue
            if event.get("event") == "done":
                result = TrainedModel.model_validate(event["result"])
            on_event(event)
        process.wait()
    finally:
        stop_process_group(process)
    if process.returncode != 0 or result is None:
        raise TrainingFailed(
            f"the training process exited with code {process.returncode}; the end of {log_path}:\n{log_tail(log_path)}"
        )
    return result


def describe_event(event: dict) -> str | None:
    """A log line for the events people want in the run's logs (epochs, start, resume); None for the rest."""
    kind = event.get("event")
    if kind == "start":
        resumed = f", resuming after epoch {event['resumed_from_epoch']}" if event["resumed_from_epoch"] else ""
        machines = f", worker {event['worker_index']} of {event['workers']} machines" if event["workers"] > 1 else ""
        return (
            f"training on {', '.join(event['devices'])} ({event['replicas']} replica(s){machines}, {event['precision']}): "
            f"{event['train_images']} train / {event['val_images']} val images, {len(event['classes'])} classes, "
            f"weights {event['weights']}, {event['total_epochs']} epochs{resumed}"
        )
    if kind == "epoch":
        metrics = ", ".join(
            f"{key} {event[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy") if key in event
        )
        return f"{event['phase']} epoch {event['epoch']}/{event['total_epochs']}: {metrics} ({event['seconds']:.1f} s)"
    if kind == "resumed":
        return f"restored the checkpoint after epoch {event['epochs_done']} (phase {event['phase']})"
    if kind == "waiting-for-workers":
        hosts = [host for role in event["cluster"].values() for host in role]
        return (
            f"TF_CONFIG describes {len(hosts)} machines ({', '.join(hosts)}); this is {event['task']}. Waiting for all "
            "of them: on each other machine run `python -m tuneflow.train_worker <this run folder>/train_job.json` "
            "with its own TF_CONFIG"
        )
    if kind == "notice":
        return event["message"]
    if kind == "output":
        return event["line"]
    return None


@task(name="fine-tune")
def fine_tune(
    dataset: PreparedDataset, settings: TrainingSettings, weights_path: Path | None, seed: int, run_dir: Path
) -> TrainedModel:
    """Fine-tune ResNet50 in its own process; log each epoch and move a progress artifact while it trains."""
    logger = get_run_logger()
    progress_id = create_progress_artifact(progress=0.0, key="training-progress", description=f"training {run_dir.name}")

    def on_event(event: dict) -> None:
        message = describe_event(event)
        if message:
            level = {"output": logging.DEBUG, "notice": logging.WARNING}.get(event["event"], logging.INFO)
            logger.log(level, message)
        if event["event"] in {"progress", "epoch"}:
            done = event.get("epochs_done", event.get("epoch", 0))
            update_progress_artifact(progress_id, progress=min(100.0, 100.0 * done / event["total_epochs"]))

    timeout = settings.timeout_minutes * 60 if settings.timeout_minutes else None
    return run_training_process(
        TrainingJob(dataset=dataset, settings=settings, weights_path=weights_path, seed=seed, run_dir=run_dir),
        on_event,
        timeout_seconds=timeout,
    )
