# The two commands of the quick start are `make demo` and `make test`; every other target
# is a building block. Everything runs from the project's own virtual environment, made
# on first use, so a fresh clone needs nothing installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)

.PHONY: help venv lint typecheck tools unit integration test demo stack-up stack-down bench clean

help:
	@echo "make demo        emulator + local Kafka + schema registry + connector, then decoded events"
	@echo "make test        lint, type check, unit and integration tests (starts what they need)"
	@echo "make stack-up    start the local Kafka broker and schema registry (.stack/env)"
	@echo "make stack-down  stop them"
	@echo "make bench       run the benchmarks under bench/ (prints tables)"

# the runtime dependencies at the versions (and hashes) the image installs, then the
# project and its dev tools around them
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# Helm, kubernetes-validate, hadolint and checkov for the chart and image checks; cached
# outside the repo, a no-op once installed
tools:
	bash tools/install.sh >/dev/null

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

test: lint typecheck tools
	$(BIN)/pytest tests

stack-up: venv
	$(BIN)/python -m dev.stack up

stack-down: venv
	$(BIN)/python -m dev.stack down

demo: venv
	$(BIN)/python -m dev.demo

bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .stack .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
