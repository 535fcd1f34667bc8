"""What the training process tells the task that supervises it."""

from __future__ import annotations

from collections.abc import Callable

Emit = Callable[[dict], None]
