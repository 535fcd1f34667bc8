"""The wheel users install holds every module and template of the source tree, under the tuneflow package only."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Source folder -> where its modules live in the installed package (pyproject.toml's package-dir).
INSTALLED_AS = {"tuneflow": "tuneflow", "flows": "tuneflow/flows", "tasks": "tuneflow/tasks", "ops": "tuneflow/ops"}


def build_wheel(out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(REPO), "-w", str(out)],
        capture_output=True, text=True, cwd=out,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    (wheel,) = out.glob("tuneflow-*.whl")
    return wheel


def test_the_wheel_holds_every_module_and_template_and_no_generic_top_level_package(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        f"{INSTALLED_AS[folder]}/{path.relative_to(REPO / folder).as_posix()}"
        for folder in INSTALLED_AS
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}: list the package in pyproject.toml [tool.setuptools] packages"
    assert "tuneflow/dataset/split.py" in names
    templates = {f"tuneflow/{path.relative_to(REPO / 'tuneflow').as_posix()}"
                 for path in (REPO / "tuneflow" / "report" / "templates").rglob("*") if path.is_file()}
    assert "tuneflow/report/templates/report.html.j2" in templates
    # `tuneflow ops apply` reads its definitions from the installed package.
    templates |= {f"tuneflow/ops/{path.relative_to(REPO / 'ops').as_posix()}"
                  for path in (REPO / "ops").rglob("*") if path.suffix in {".yaml", ".json"}}
    assert "tuneflow/ops/automations/retrain-failed.yaml" in templates
    missing = sorted(templates - names)
    assert not missing, f"the wheel lacks {missing}: list them in pyproject.toml [tool.setuptools.package-data]"
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"tuneflow"}, f"the wheel installs top-level packages besides tuneflow: {sorted(top_level)}"
