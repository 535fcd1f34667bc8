# The two commands a fresh machine needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test test-fast field-check chromium bench clean-runs stack stack-down stack-restart-server

# pip installs uv, and uv the rest: from the same registry, it links TensorFlow's files from its cache in
# seconds where pip unpacks them again for minutes (6 minutes of a CI run on a busy 2-core machine).
# --compile-bytecode writes the .pyc files at install time: where PYTHONDONTWRITEBYTECODE is set (this CI
# machine sets it) Python never caches them, and every process compiled TensorFlow again (13 s an import, 5 s).
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test,bench]'
	touch $@

install: $(INSTALLED)

# Generate the sample dataset and run the retrain flow on it end to end.
DEMO_DATA_ROOT ?= data
demo: $(INSTALLED)
	$(BIN)/tuneflow demo --data-root $(DEMO_DATA_ROOT)

# Install what the tests need and run them all (the slow ones too), a file per worker process: most of a
# test's time is tracing ResNet50, one core's work, and much of the rest waiting on servers and processes, so
# three workers keep two cores busy (measured side by side: 6m37 with three, 7m25 with two).
# Files go out in collection order, not xdist's most-tests-first: tests/file_order.py puts the longest first,
# as the last run measured them (pytest's cache), or on a fresh clone by what their tests use.
# Beside them the field check: the wheel installed in a fresh environment outside the checkout, run as a user
# would, and `make demo` (scripts/test_with_field_check.sh prints its output after the tests').
TEST_WORKERS ?= 3
test: $(INSTALLED) chromium
	PYTHON=$(PYTHON) BIN=$(BIN) scripts/test_with_field_check.sh -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The inner loop while coding (about a minute): every test except the slow ones, which train ResNet50 or start a
# Prefect server. One process: the fast tests are too short to win back a second worker's start (importing
# TensorFlow). `make test` still runs everything; run it before pushing.
test-fast: $(INSTALLED) chromium
	$(BIN)/python -m pytest -m "not slow"

field-check: $(INSTALLED)
	PYTHON=$(PYTHON) UV=$(BIN)/uv scripts/field_check.sh

# The HTML report is tested in a real headless Chromium driven through chromedriver: Debian/Ubuntu packages,
# installed here when missing (CI runs as root; elsewhere through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "make test needs Chromium and chromedriver on PATH (the report's browser test); install them" >&2; \
	  exit 1; \
	fi; \
	echo "installing chromium and chromium-driver for the report's browser test"; \
	$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# Benchmarks, not tests: each prints its ratios against a baseline measured in the same run. Without a GPU
# (no nvidia-smi) the training-step grid shrinks: at 224 px and batch 256 a CPU would take hours.
MODEL_STEP_OPTIONS ?= $(if $(shell command -v nvidia-smi),,--image-size 64 --batches 16,32 --steps 3)
bench: $(INSTALLED)
	$(BIN)/python bench/augmentation_bench.py
	$(BIN)/python bench/model_step.py $(MODEL_STEP_OPTIONS)
	$(BIN)/python bench/training_bench.py
	$(BIN)/python bench/training_bench.py --mix food101-real --no-training
	$(BIN)/python bench/decode_floor.py
	$(BIN)/python bench/compare_recipes.py
	$(BIN)/python bench/drive_download.py
	$(BIN)/python bench/prepare_bench.py
	$(BIN)/python bench/scale_bench.py
	$(BIN)/python bench/evaluation_bench.py
	$(BIN)/python bench/food101_run.py

# A local Prefect server, the work pools, alerts and automations of ops/ (`tuneflow ops apply`; alerts go to
# TUNEFLOW_ALERT_URL), the deployments of prefect.yaml and a worker per pool; prints the dashboard URL. Everything (ports, database, logs) under data/stack/. See docs/operations.md.
# DB: the server's database, sqlite (embedded, a file under data/stack/home) or postgres (a PostgreSQL that
# scripts/postgres.sh starts from data/stack/postgres; stack-down stops it).
DB ?= sqlite
# stack-down and stack-restart-server act on the database the stack was started with, so they pass DB on only
# when it was given (a DB=... that differs from the running stack's is refused, never silently switched).
GIVEN_DB := $(if $(filter command line environment environment override,$(origin DB)),DB=$(DB))
stack: $(INSTALLED)
	BIN=$(BIN) DB=$(DB) scripts/stack.sh up

stack-down:
	BIN=$(BIN) $(GIVEN_DB) scripts/stack.sh down

# The server alone, stopped and started again on the same port and database (as an upgrade does); runs keep going.
stack-restart-server:
	BIN=$(BIN) $(GIVEN_DB) scripts/stack.sh restart-server

clean-runs:
	rm -rf data/runs data/sample
