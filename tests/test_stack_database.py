"""The database choice of `make stack` (scripts/stack.sh's DB) and of the tests' own servers, checked without
starting any: tests/test_deployments.py runs the whole stack on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.prefect_database import CHOICE, server_database

REPO = Path(__file__).resolve().parents[1]
INSTALL = "apt-get install -y postgresql"


@pytest.mark.parametrize("command", ["up", "down", "restart-server"])
def test_the_stack_refuses_a_database_it_does_not_know_naming_the_two_it_does(command, tmp_path):
    # BIN points nowhere: a script that ignored DB would stop at the missing Prefect CLI, never start anything.
    result = subprocess.run([str(REPO / "scripts" / "stack.sh"), command], capture_output=True, text=True,
                            env={**os.environ, "DB": "mysql", "BIN": str(tmp_path / "no-venv")})
    assert result.returncode != 0
    assert "unknown DB=mysql" in result.stderr
    assert "DB=sqlite" in result.stderr and "DB=postgres" in result.stderr


def test_without_postgresql_binaries_the_script_says_how_to_install_them(tmp_path):
    result = subprocess.run([str(REPO / "scripts" / "postgres.sh"), "start", str(tmp_path / "cluster")],
                            capture_output=True, text=True, env={**os.environ, "PG_BIN": str(tmp_path)})
    assert result.returncode != 0 and result.stdout == ""
    assert INSTALL in result.stderr and f"PG_BIN={tmp_path}" in result.stderr
    assert not (tmp_path / "cluster").exists()


def test_the_tests_server_falls_back_to_sqlite_only_with_a_warning(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PG_BIN", str(tmp_path))  # as on a machine without PostgreSQL
    monkeypatch.delenv(CHOICE, raising=False)
    with pytest.warns(UserWarning, match="on SQLite, not PostgreSQL") as warned, server_database("a test") as env:
        assert env == {}
    assert INSTALL in str(warned[0].message)
    assert "a test ran its Prefect server on SQLite, not PostgreSQL" in capsys.readouterr().out


def test_asking_for_postgresql_where_it_is_missing_fails_instead_of_falling_back(monkeypatch, tmp_path):
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    monkeypatch.setenv(CHOICE, "postgres")
    with pytest.raises(pytest.fail.Exception, match=INSTALL), server_database("a test"):
        pass


def test_a_database_choice_the_tests_do_not_know_is_refused(monkeypatch):
    monkeypatch.setenv(CHOICE, "mysql")
    with pytest.raises(ValueError, match="TUNEFLOW_TEST_DATABASE='mysql'"), server_database("a test"):
        pass
