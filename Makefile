# Self-documenting: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup run test test-all lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the pinned requirements

run: $(STAMP) ## train, evaluate and register the model on the embedded months (2021-01/02/03)
	$(PY) pipeline.py $(ARGS)

test: $(STAMP) ## fast test suite (unit, integration on small slices, recovery)
	$(PY) -m pytest -q

test-all: $(STAMP) ## every test, including the slow end-to-end run on the real months
	$(PY) -m pytest -q -m ''

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove pipeline outputs (work directory and model registry), keep the venv
	rm -rf var models
