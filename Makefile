# The two quickstart commands: `make bench` (quick benchmark + leaderboard) and `make test`.
# Cases run in one process per core (-n auto), one torch thread each (the plugin's default).
# Each creates .venv from pyproject.toml when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bench test smoke lint clean-cache

$(BIN)/kdbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev,docs,lint,plots,timm,mlflow,tensorboard,wandb]"
	touch $@

bench: $(BIN)/kdbench
	$(BIN)/pytest suites -n auto $(PYTEST_ARGS)

test: $(BIN)/kdbench
	$(BIN)/pytest tests -n 2 --durations=10 $(PYTEST_ARGS)

smoke: $(BIN)/kdbench
	$(BIN)/pytest suites --kd-profile smoke --kd-device cpu -n auto $(PYTEST_ARGS)

# ruff (lint + format check) and mypy on the code; actionlint checks the workflows and runs
# shellcheck (Debian's shellcheck package) on their scripts; shellcheck on .ci/run
lint: $(BIN)/kdbench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/actionlint .github/workflows/*.yml
	shellcheck .ci/run scripts/*.sh

clean-cache:
	rm -rf .kdbench_cache
