"""The order `make test` hands test files to its workers: measured durations, or what the tests use."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.file_order import TestFacts, files_longest_first

REPO = Path(__file__).resolve().parents[1]


def facts(nodeid: str, *fixtures: str, slow: bool = False) -> TestFacts:
    return TestFacts(nodeid=nodeid, fixtures=frozenset(fixtures), slow=slow)


# As pytest collects them: alphabetically by file.
SUITE = [
    facts("tests/test_cli.py::test_help"),
    facts("tests/test_deployments.py::test_stack", "local_stack", "resnet50_weights_file", slow=True),
    facts("tests/test_export.py::test_onnx", "tiny_dataset", slow=True),
    facts("tests/test_flow.py::test_retrain", "prefect_server", "resnet50_weights_file", slow=True),
    facts("tests/test_flow.py::test_config"),
    facts("tests/test_prepare.py::test_split", "tiny_archive"),
    facts("tests/test_training.py::test_fast"),
    facts("tests/test_training.py::test_phases", "two_phase_run", slow=True),
]


def test_a_fresh_clone_runs_its_own_stack_then_training_then_slow_then_fast_files():
    assert files_longest_first(SUITE, recorded={}) == [
        "tests/test_deployments.py",
        "tests/test_flow.py",  # a file's most demanding test places it
        "tests/test_training.py",
        "tests/test_export.py",
        "tests/test_cli.py",
        "tests/test_prepare.py",
    ]


def test_recorded_durations_put_the_longest_file_first_whatever_its_tests_use():
    recorded = {test.nodeid: 1.0 for test in SUITE}
    recorded["tests/test_prepare.py::test_split"] = 500.0
    recorded["tests/test_flow.py::test_config"] = 300.0  # the file's tests add up: 301 s
    assert files_longest_first(SUITE, recorded) == [
        "tests/test_prepare.py",
        "tests/test_flow.py",
        "tests/test_training.py",  # 2 s
        "tests/test_cli.py",  # 1 s each: pytest's order
        "tests/test_deployments.py",
        "tests/test_export.py",
    ]


def test_one_test_without_a_recorded_duration_brings_back_the_whole_fallback_order():
    recorded = {test.nodeid: 1.0 for test in SUITE}
    recorded["tests/test_prepare.py::test_split"] = 500.0
    del recorded["tests/test_export.py::test_onnx"]  # a test just written
    assert files_longest_first(SUITE, recorded) == files_longest_first(SUITE, {})


def run_pytest(folder: Path, *args: str) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args], cwd=folder, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def collected_files(folder: Path) -> list[str]:
    lines = run_pytest(folder, "--collect-only").splitlines()
    return list(dict.fromkeys(line.split("::")[0] for line in lines if "::" in line))


def test_a_run_under_xdist_records_durations_that_order_the_next_run(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the rootdir: its own .pytest_cache
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from tests import file_order

        def pytest_configure(config):
            file_order.register(config)

        def pytest_collection_modifyitems(config, items):
            file_order.sort_longest_files_first(config, items)
    """))
    (tmp_path / "test_a_quick.py").write_text("def test_quick():\n    pass\n")
    (tmp_path / "test_b_waits.py").write_text("import time\n\ndef test_waits():\n    time.sleep(0.5)\n")
    assert collected_files(tmp_path) == ["test_a_quick.py", "test_b_waits.py"]  # nothing recorded: pytest's order

    run_pytest(tmp_path, "-n", "2", "--dist", "loadfile")
    assert collected_files(tmp_path) == ["test_b_waits.py", "test_a_quick.py"]
