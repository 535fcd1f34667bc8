"""The layers point one way: cli > flows > tasks > the library, and only the first three import Prefect.

import-linter checks the contracts in pyproject.toml. It builds its import graph by walking the folder of the
root package, but tasks/ and flows/ sit beside tuneflow/ in the checkout and only become tuneflow.tasks and
tuneflow.flows when installed (setuptools' package-dir): linted in place, every import of them would be
missing from the graph. So each test lints a copy of the source tree laid out as the wheel installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS_CONTRACT = "Layers point down: the CLI, then the flows, then the tasks, then the library"
PREFECT_CONTRACT = "Only the CLI, the flows, the tasks and ops import Prefect"


def installed_layout(destination: Path) -> Path:
    """A copy of the package as installed: tuneflow/, with tasks/ and flows/ inside it as pyproject maps them."""
    package_dirs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "tuneflow", destination / "tuneflow", ignore=skip)
    for package, folder in package_dirs.items():
        shutil.copytree(REPO / folder, destination.joinpath(*package.split(".")), ignore=skip)
    return destination


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the copy in tree: first on the path, ahead of the editable install's finder."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(PYPROJECT), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_source_tree_keeps_both_contracts(tmp_path):
    result = lint_imports(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{LAYERS_CONTRACT} KEPT" in result.stdout and f"{PREFECT_CONTRACT} KEPT" in result.stdout
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "complaint"),
    [
        ("tuneflow/evaluation/metrics.py", "import prefect", PREFECT_CONTRACT, "tuneflow.evaluation.metrics -> prefect"),
        (
            "tuneflow/training/fine_tune.py",
            "from tuneflow.tasks.prepare import prepare",
            LAYERS_CONTRACT,
            "tuneflow.training is not allowed to import tuneflow.tasks",
        ),
        (
            "tuneflow/tasks/prepare.py",
            "from tuneflow.flows.retrain import retrain",
            LAYERS_CONTRACT,
            "tuneflow.tasks is not allowed to import tuneflow.flows",
        ),
        (
            "tuneflow/dataset/split.py",
            "from tuneflow.training.model import build_classifier",
            LAYERS_CONTRACT,
            "tuneflow.dataset is not allowed to import tuneflow.training",
        ),
        (
            "tuneflow/imaging/decoding.py",
            "from tuneflow.fetch.archives import describe_archive",
            LAYERS_CONTRACT,
            "tuneflow.imaging is not allowed to import tuneflow.fetch",
        ),
        (
            "tuneflow/config/__init__.py",
            "from tuneflow.report.text import escape",
            LAYERS_CONTRACT,
            "is not allowed to import tuneflow.report",
        ),
        ("tuneflow/unplaced.py", "import json", LAYERS_CONTRACT, "The following modules are not listed as layers"),
    ],
    ids=["library-imports-prefect", "library-imports-a-task", "task-imports-a-flow", "dataset-imports-training",
         "imaging-imports-its-sibling-fetch", "core-imports-report", "module-without-a-layer"],
)
def test_a_violation_breaks_its_contract(tmp_path, module, line, contract, complaint):
    tree = installed_layout(tmp_path)
    source = tree / module
    source.write_text((source.read_text() if source.exists() else "") + f"\n{line}\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout and complaint in result.stdout, result.stdout


def test_the_training_process_imports_neither_prefect_nor_pydrive2():
    """The GPU training process runs tuneflow.training.worker, which imports tuneflow.training.fine_tune: nothing of Prefect's."""
    check = (
        "import sys, tuneflow.training.fine_tune, tuneflow.training.worker; "
        "loaded = [name for name in ('prefect', 'pydrive2') if name in sys.modules]; "
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
