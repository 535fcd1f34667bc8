"""The order in which `make test` hands test files to its pytest-xdist workers: the longest first.

`--dist loadfile --no-loadscope-reorder` (Makefile) gives each worker a whole file at a time, in collection order,
each worker holding its current file and the next one. A long file handed out last would leave the other workers
idle at the end, so the long files go first and the short ones even out the finish.

How long a file takes is what the suite measured itself: every run records each test's duration (setup, call and
teardown) in pytest's cache (.pytest_cache/, git-ignored), and the next run sums them per file. Nothing to keep by
hand, so nothing to go stale. Where a collected test has no recorded duration (a fresh clone, as in CI, or a test
just written), the whole order falls back to what the tests use (`fallback_rank`), which changes only when a test
changes what it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

CACHE_KEY = "tuneflow/test-durations"  # a JSON file under .pytest_cache/v/
PLUGIN_NAME = "tuneflow-test-durations"

# A test using this fixture starts a Prefect server, work pools and workers of its own and trains through them:
# minutes for one test.
OWN_STACK_FIXTURES = frozenset({"local_stack"})
# A test using one of these trains ResNet50 from the test weights file (in the test's process or another).
TRAINING_FIXTURES = frozenset({"resnet50_weights_file", "two_phase_run"})


@dataclass(frozen=True)
class TestFacts:
    """What the order is decided from, for one collected test."""

    __test__ = False  # a record, not a test class for pytest to collect

    nodeid: str
    fixtures: frozenset[str]
    slow: bool

    @property
    def file(self) -> str:
        return file_of(self.nodeid)


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def facts_of(item: pytest.Item) -> TestFacts:
    return TestFacts(
        nodeid=item.nodeid,
        fixtures=frozenset(getattr(item, "fixturenames", ())),
        slow=item.get_closest_marker("slow") is not None,
    )


def fallback_rank(test: TestFacts) -> int:
    """Where a test's file goes when durations are missing: 0 first. Files of one rank keep pytest's order.

    A file starting its own Prefect stack, then files that train ResNet50 from the test weights, then the other
    files with slow tests, then the fast ones. Simulating xdist's hand-out with the durations of the CI run of
    2026-12-03 (3 workers), this order finishes as early as the measured longest-first order; counting slow tests
    instead does not (a file of 18 quick slow tests would go before one that trains for minutes).
    """
    if test.fixtures & OWN_STACK_FIXTURES:
        return 0
    if test.fixtures & TRAINING_FIXTURES:
        return 1
    return 2 if test.slow else 3


def files_longest_first(tests: list[TestFacts], recorded: dict[str, float]) -> list[str]:
    """The test files of `tests`, in the order to run them: by their recorded seconds, longest first, when every
    test has a recorded duration; otherwise by `fallback_rank`. Ties keep the order of `tests`."""
    files: dict[str, list[TestFacts]] = {}
    for test in tests:
        files.setdefault(test.file, []).append(test)
    if all(test.nodeid in recorded for test in tests):
        return sorted(files, key=lambda file: -sum(recorded[test.nodeid] for test in files[file]))
    return sorted(files, key=lambda file: min(fallback_rank(test) for test in files[file]))


class RecordedDurations:
    """A pytest plugin: records each test's duration when a run ends and gives the recorded ones to the next run.

    Under pytest-xdist the controller records (it hears every worker's reports) and hands what it read to each
    worker: every worker orders its own collection, and xdist aborts a run whose workers collected different
    orders, so they must not each read the cache file (another run could write it in between).
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.cache = getattr(config, "cache", None)  # None under `-p no:cacheprovider`: nothing is recorded
        self._recorded: dict[str, float] | None = None
        self.measured: dict[str, float] = {}
        self.failed: set[str] = set()

    def recorded(self) -> dict[str, float]:
        if self._recorded is None:
            if self.is_worker:
                self._recorded = dict(self.config.workerinput.get(CACHE_KEY, {}))
            else:
                self._recorded = dict(self.cache.get(CACHE_KEY, {})) if self.cache is not None else {}
        return self._recorded

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput[CACHE_KEY] = self.recorded()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        self.measured[report.nodeid] = self.measured.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.add(report.nodeid)  # it may have stopped early: keep the duration of its last pass

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or self.cache is None or not self.measured:
            return
        root = Path(session.config.rootpath)
        # Tests that did not run this time keep their duration; the files that are gone are forgotten.
        kept = {nodeid: seconds for nodeid, seconds in self.recorded().items() if (root / file_of(nodeid)).is_file()}
        kept.update({nodeid: round(s, 3) for nodeid, s in self.measured.items() if nodeid not in self.failed})
        self.cache.set(CACHE_KEY, kept)


def register(config: pytest.Config) -> None:
    config.pluginmanager.register(RecordedDurations(config), PLUGIN_NAME)


def sort_longest_files_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    plugin: RecordedDurations = config.pluginmanager.get_plugin(PLUGIN_NAME)
    order = files_longest_first([facts_of(item) for item in items], plugin.recorded())
    rank = {file: position for position, file in enumerate(order)}
    items.sort(key=lambda item: rank[file_of(item.nodeid)])
