# The two commands a fresh machine needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test bench clean-runs

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
	$(BIN)/python bench/prepare_bench.py

clean-runs:
	rm -rf data/runs data/sample
