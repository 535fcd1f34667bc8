# The two commands a fresh machine needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test bench clean-runs stack stack-down

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

# Generate the sample dataset and run the retrain flow on it end to end.
demo: $(INSTALLED)
	$(BIN)/tuneflow demo

# Install what the tests need and run them all (the slow ones too).
test: $(INSTALLED)
	$(BIN)/python -m pytest

# Benchmarks, not tests: each prints its ratios against a baseline measured in the same run.
bench: $(INSTALLED)
	$(BIN)/python bench/training_bench.py
	$(BIN)/python bench/compare_recipes.py
	$(BIN)/python bench/drive_download.py

# A local Prefect server, the gpu and cpu work pools, the deployments of prefect.yaml and a worker per pool;
# prints the dashboard URL. Everything (ports, database, logs) under data/stack/. See README, Operations.
stack: $(INSTALLED)
	BIN=$(BIN) scripts/stack.sh up

stack-down:
	BIN=$(BIN) scripts/stack.sh down

clean-runs:
	rm -rf data/runs data/sample
