"""Finished steps that a retried run reuses instead of downloading and training again.

A run retried from the dashboard (or by the flow's own retries) is the same flow run started again, possibly on
another worker. The steps before promotion keep their results under data_root/cache/results/ (on the persistent
storage every worker mounts, where the files those results point at also are), keyed by:

- their inputs (a changed setting or dataset recomputes),
- the step's own code and tuneflow's version (a new release recomputes; a fix that changes what a finished step
  produced must bump the version, or start a new run instead of retrying),
- the flow run (a new run always looks at Drive again and trains; only a retry of the same run reuses).

Promotion, the report and pruning never reuse: they act on the registry and the dashboard as they are now.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, RUN_ID, TASK_SOURCE, CachePolicy
from prefect.tasks import Task

RESULTS_CACHE = Path("cache") / "results"


class TuneflowVersion(CachePolicy):
    """The installed tuneflow's version, as a cache key part: a result from another release is not reused."""

    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kwargs: Any) -> str:
        return f"tuneflow {version('tuneflow')}"


REUSED_ON_RETRY = INPUTS + TASK_SOURCE + TuneflowVersion() + RUN_ID


def results_kept_in(data_root: Path) -> Callable[[Task], Task]:
    """`keep(step)`: the step with its result stored under data_root/cache/results/, where a retry finds it."""
    storage = Path(data_root).resolve() / RESULTS_CACHE

    def keep(step: Task) -> Task:
        return step.with_options(result_storage=storage)

    return keep
