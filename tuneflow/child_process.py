"""Starting the Python child processes tuneflow runs (the training process, preparation helpers) on this same code.

A child started as `python -m tuneflow.…` must import the tuneflow that started it, whether that is an installed
wheel, an editable install or a source tree on PYTHONPATH. Putting the folder that holds this `tuneflow` package
first on the child's PYTHONPATH guarantees it: for a wheel that is site-packages (already on the path), for a
checkout it is the repository root.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parent.parent


def python_module_command(module: str, *arguments: str) -> list[str]:
    """`python -m module arguments...` with this interpreter."""
    return [sys.executable, "-m", module, *arguments]


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with CODE_ROOT first on PYTHONPATH, plus `extra`."""
    python_path = os.pathsep.join(filter(None, [str(CODE_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, **(extra or {})}
