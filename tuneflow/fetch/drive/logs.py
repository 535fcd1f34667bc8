"""The package's logger and the logger type its functions accept.

Every module logs as `tuneflow.fetch.drive`, not under its own module name, so one logging setting raises or silences
all Drive output, and log lines read the same whichever module wrote them.
"""

from __future__ import annotations

import logging

# The task layer passes Prefect's run logger, a LoggerAdapter; plain callers get the package logger.
Logger = logging.Logger | logging.LoggerAdapter
log = logging.getLogger("tuneflow.fetch.drive")
