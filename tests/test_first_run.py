"""A machine where Prefect has never run: the first `tuneflow retrain` waits for the server's first start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUNEFLOW = Path(sys.executable).with_name("tuneflow")


@pytest.mark.slow
def test_a_first_run_outlasts_prefects_startup_timeout_and_says_what_it_waits_for(tmp_path):
    # A 1 s timeout stands in for a machine where the first start (creating and migrating the database) takes
    # longer than Prefect's 20 s: before the fix the run died with "Timed out while attempting to connect".
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "empty-prefect-home"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    missing = tmp_path / "dataset.zip"
    result = subprocess.run(
        [str(TUNEFLOW), "retrain", "--source", str(missing), "--data-root", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert "Timed out while attempting to connect" not in output
    assert "starting a temporary Prefect server" in output and "first start: creating its database" in output
    assert "Prefect server ready after" in output
    # The flow ran: its first task reached the (deliberately missing) archive and said so.
    assert result.returncode != 0
    assert f"dataset archive {str(missing)!r} does not exist" in output
    assert (tmp_path / "empty-prefect-home" / "prefect.db").is_file()
