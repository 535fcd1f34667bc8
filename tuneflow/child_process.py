"""Starting the Python child processes tuneflow runs (the training process, preparation helpers) on this same code,
and stopping a process together with everything it started.

A child started as `python -m tuneflow.…` must import the tuneflow that started it, whether that is an installed
wheel, an editable install or a source tree on PYTHONPATH. Putting the folder that holds this `tuneflow` package
first on the child's PYTHONPATH guarantees it: for a wheel that is site-packages (already on the path), for a
checkout it is the repository root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parent.parent
# How long a stopped process group gets to exit on SIGTERM before SIGKILL.
TERMINATE_GRACE_SECONDS = 10


def python_module_command(module: str, *arguments: str) -> list[str]:
    """`python -m module arguments...` with this interpreter."""
    return [sys.executable, "-m", module, *arguments]


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with CODE_ROOT first on PYTHONPATH, plus `extra`."""
    python_path = os.pathsep.join(filter(None, [str(CODE_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, **(extra or {})}


def stop_process_group(process: subprocess.Popen, grace_seconds: float = TERMINATE_GRACE_SECONDS) -> None:
    """SIGTERM the process group that `process` leads, SIGKILL it if it lingers past grace_seconds.

    The process must have been started with start_new_session=True: its group then holds whatever it started
    (a worker's flow-run processes, their training processes), and stopping the group stops them all.
    """
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
