"""Prefect's temporary server, started before any heavy work when no PREFECT_API_URL is set."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

# A first start of Prefect's temporary server creates its database; no machine of ours took a minute.
PREFECT_FIRST_START_TIMEOUT_S = 300
PREFECT_START_NOTICE_EVERY_S = 15


def start_prefect_api() -> None:
    """Give flow runs a Prefect API before any heavy work starts, waiting as long as a first start takes.

    With no PREFECT_API_URL, Prefect starts a temporary server for the first flow run and gives it
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s) to answer. On a machine where Prefect has never run,
    that start also creates and migrates the SQLite database under PREFECT_HOME: 8 s on an idle 2-core machine,
    16 s with both cores busy (measured), more on slower CPUs, so a first `tuneflow demo` died with "Timed out
    while attempting to connect to ephemeral Prefect API server". Started here, before TensorFlow is imported and
    the sample drawn (which would compete with it for the CPU), with minutes to answer and a line saying what it
    waits for; the flow run then uses this same server.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client takes for its ephemeral server
    timeout_s = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), PREFECT_FIRST_START_TIMEOUT_S)
    database_exists = any(Path(PREFECT_HOME.value()).glob("*.db"))
    print(
        "tuneflow: PREFECT_API_URL is not set, so starting a temporary Prefect server for this run"
        + ("" if database_exists else f" (first start: creating its database in {PREFECT_HOME.value()})")
        + " ...",
        file=sys.stderr,
        flush=True,
    )
    failure: list[BaseException] = []

    def start() -> None:
        try:
            server.start(timeout=timeout_s)
        except BaseException as error:  # re-raised below, in the main thread
            failure.append(error)

    starting = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    started = time.monotonic()
    starting.start()
    while starting.is_alive():
        starting.join(PREFECT_START_NOTICE_EVERY_S)
        if starting.is_alive():
            print(f"tuneflow: still waiting for the Prefect server to answer ({time.monotonic() - started:.0f} s, "
                  f"giving it up to {timeout_s} s)", file=sys.stderr, flush=True)
    if failure:
        raise RuntimeError(
            f"the temporary Prefect server did not start within {timeout_s} s ({failure[0]}). Start a server "
            "yourself (`prefect server start`, or `make stack`) and set PREFECT_API_URL, or raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        ) from failure[0]
    print(f"tuneflow: Prefect server ready after {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
