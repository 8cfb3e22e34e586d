# Developer entry points. `make test` is what CI runs (see .ci/run).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist processes of `make test`: most of the e2e tier's time is spent waiting on its
# processes, so two overlap well even on 2 cores. Tests marked `alone` judge timing at the PMS
# (rates, pauses, kills) and run afterwards, one at a time, so another stack's CPU use cannot
# skew what they measure.
TEST_WORKERS ?= 2

.PHONY: venv test lint demo services

## venv: create .venv and install the project editable with dev extras (redone when pyproject.toml changes)
venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: python3.11 or python3 is required" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## services: make sure redis-server and PostgreSQL are installed (apt-get as root, else explain)
services:
	deploy/ensure-services.sh redis postgres

## test: lint, then the whole suite on real servers
test: venv services
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd typecheck && ../$(BIN)/lint-imports ../pyproject.toml
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not alone"
	$(BIN)/pytest -q -m alone

## lint: ruff check and format check, mypy, and the import contract (layers import one way)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd typecheck && ../$(BIN)/lint-imports ../pyproject.toml

## demo: run the demo against a local redis-server
demo: venv
	deploy/ensure-services.sh redis
	$(BIN)/python -m pmsq.cli.demo
