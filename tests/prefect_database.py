"""The database of a test's own `prefect server start`: PostgreSQL, the production configuration, started by
scripts/postgres.sh as `make stack DB=postgres` starts it, wherever its binaries are installed; else SQLite, said
in a warning that pytest's summary shows.

TUNEFLOW_TEST_DATABASE chooses instead: `sqlite` (to compare, or where PostgreSQL is unwanted) or `postgres` (a
missing installation then fails the test instead of falling back).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_SH = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"
CHOICE = "TUNEFLOW_TEST_DATABASE"


def postgres(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(POSTGRES_SH), *args], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True)


@contextmanager
def server_database(user: str) -> Iterator[dict[str, str]]:
    """The environment a Prefect server needs for its database (nothing for SQLite, Prefect's default), with
    PostgreSQL running until the block ends. `user` names the test in what is printed."""
    choice = os.environ.get(CHOICE, "")
    if choice not in ("", "sqlite", "postgres"):
        raise ValueError(f"{CHOICE}={choice!r}: use sqlite, postgres, or leave it unset (postgres where installed)")
    if choice == "sqlite":
        print(f"{user}: Prefect server on SQLite ({CHOICE}=sqlite)")
        yield {}
        return
    found = postgres("bin")
    if found.returncode != 0:
        if choice == "postgres":
            pytest.fail(f"{CHOICE}=postgres, but {found.stderr.strip()}")
        notice = f"{user} ran its Prefect server on SQLite, not PostgreSQL: {found.stderr.strip()}"
        print(notice)
        warnings.warn(notice, stacklevel=1)
        yield {}
        return
    # Not under pytest's tmp_path: its folders are private to root, and the cluster's owner (the postgres user,
    # when tests run as root) must reach its own folder. mkdtemp's is private too, so open it to passers-through.
    folder = Path(tempfile.mkdtemp(prefix="tuneflow-postgres-"))
    folder.chmod(0o711)
    cluster = folder / "cluster"
    try:
        started = postgres("start", str(cluster))
        assert started.returncode == 0, f"scripts/postgres.sh start {cluster} failed:\n{started.stderr}"
        print(f"{user}: Prefect server on PostgreSQL, {started.stderr.strip().splitlines()[-1]}")
        yield {"PREFECT_API_DATABASE_CONNECTION_URL": started.stdout.strip()}
    finally:
        stopped = postgres("stop", str(cluster))
        if stopped.returncode == 0:
            shutil.rmtree(folder, ignore_errors=True)
    assert stopped.returncode == 0, f"scripts/postgres.sh stop {cluster} failed:\n{stopped.stderr}"
