"""The training process: `python -m tuneflow.training.worker JOB.json`.

Training runs in its own process so that stopping it (a cancelled or timed-out flow, a killed worker) really
frees the GPU: a thread running model.fit can't be interrupted. It prints one event per line on stdout (JSON, the
models of tuneflow.events) for its supervisor (tuneflow.training.process); TensorFlow's own chatter goes to
stderr, which the supervisor keeps in train.log.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from tuneflow.config import TrainingSettings
from tuneflow.events import TrainingDone, TrainingEvent
from tuneflow.records import PreparedDataset

PARENT_CHECK_SECONDS = 2.0


class TrainingJob(BaseModel):
    """Everything the training process needs, written as JSON by its supervisor."""

    dataset: PreparedDataset
    settings: TrainingSettings
    weights_path: Path | None
    seed: int
    run_dir: Path
    cpu_replicas: int = 1
    # Decoded photos kept across runs (data_root/cache/decoded); None: a cache of the run's own, deleted at the end.
    decoded_store: Path | None = None


def emit(event: TrainingEvent) -> None:
    print(event.model_dump_json(), flush=True)


def exit_when_orphaned(parent_pid: int) -> None:
    """If the supervisor dies without stopping us (SIGKILL, OOM), stop too instead of holding the GPU."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(PARENT_CHECK_SECONDS)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tuneflow.training.worker JOB.json", file=sys.stderr)
        return 2
    job = TrainingJob.model_validate_json(Path(argv[0]).read_text())
    exit_when_orphaned(os.getppid())
    from tuneflow.training.fine_tune import train_classifier  # imports TensorFlow: after the cheap checks

    result = train_classifier(
        job.dataset, job.settings, job.weights_path, job.seed, job.run_dir, emit=emit, cpu_replicas=job.cpu_replicas,
        decoded_store=job.decoded_store,
    )
    emit(TrainingDone(result=result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
