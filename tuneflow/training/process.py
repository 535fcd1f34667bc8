"""Supervising the training process: start `python -m tuneflow.training.worker JOB.json`, relay its events, stop it.

The process is stopped (its whole process group) whenever supervision ends early: a timeout, an exception, the
caller being cancelled. A restarted run continues from the run folder's last checkpoint. Plain Python: the
fine-tune task (tasks/train.py) turns the events into Prefect logs and a progress artifact.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tuneflow.child_process import child_environment, python_module_command, stop_process_group
from tuneflow.records import TrainedModel
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
    on_event: Callable[[dict], None],
    timeout_seconds: float | None = None,
    env: dict[str, str] | None = None,
) -> TrainedModel:
    """Run tuneflow.training.worker on the job; call on_event for each event; stop it on timeout or any exit."""
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
    if kind == "cache":
        # The decoding pass: logged at its start, at each quarter and at its end, not at every progress event.
        images, state = event["images"], event["state"]
        if state == "reused":
            return f"decoded {event['name']} photos: all {images} were decoded by an earlier run or attempt, none to decode"
        if state == "complete":
            return (f"decoded {event['name']} photos: all {images} cached for the epochs to come ({event['decoded']} "
                    f"decoded now, {event['reused']} decoded by an earlier run or attempt)")
        done, step = event["done"], event["step"]  # the pass reports every `step` photos
        if done == 0 or done * 4 // images != (done - step) * 4 // images:
            reused = f" ({event['reused']} more decoded by an earlier run or attempt)" if event["reused"] else ""
            return f"decoding {event['name']} photos into the cache: {done} of {images}{reused}"
        return None
    if kind == "waiting-for-workers":
        hosts = [host for role in event["cluster"].values() for host in role]
        return (
            f"TF_CONFIG describes {len(hosts)} machines ({', '.join(hosts)}); this is {event['task']}. Waiting for all "
            "of them: on each other machine run `python -m tuneflow.training.worker <this run folder>/train_job.json` "
            "with its own TF_CONFIG"
        )
    if kind == "notice":
        return event["message"]
    if kind == "output":
        return event["line"]
    return None
