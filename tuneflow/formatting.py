"""Numbers as a reader sees them: shares as percentages, changes in percentage points, sizes on disk.

One function each for the CLI, the report pages, the dashboard and the logs, so that the same accuracy or size
reads the same wherever it is shown: 81.23%, +2.5 points, 15.2 GB. Sizes are in decimal units (1 kB = 1,000
bytes), as disks are sold and `df -H` shows them; the Drive download logs keep MiB, the unit of drive.chunk_mib.
"""

from __future__ import annotations

import math

# Shown wherever a value is undefined (a precision with nothing predicted, a model version older than a field).
UNDEFINED = "—"
BYTE_UNITS = ("kB", "MB", "GB", "TB")


def is_undefined(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, spec: str = ".3f") -> str:
    """A number formatted with `spec`, or UNDEFINED for None or NaN."""
    return UNDEFINED if is_undefined(value) else format(value, spec)


def percent(value: float | None, digits: int = 2) -> str:
    """A share as a percentage (0.8123 -> 81.23%), or UNDEFINED for None or NaN."""
    return number(value, f".{digits}%")


def points(change: float | None, digits: int = 1) -> str:
    """A difference of two shares in signed percentage points (0.025 -> +2.5 points), or UNDEFINED."""
    return UNDEFINED if is_undefined(change) else f"{change * 100:+.{digits}f} points"


def byte_size(count: int) -> str:
    """A size on disk: 512 B, 150.6 kB, 15.2 GB (decimal units, one decimal)."""
    value, unit = float(count), "B"
    for larger in BYTE_UNITS:
        if round(value, 1) < 1000:  # 999.96 kB would print as 1000.0 kB: that is 1.0 MB
            break
        value, unit = value / 1000, larger
    return f"{count} B" if unit == "B" else f"{value:,.1f} {unit}"
