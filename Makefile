# Self-documenting: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# operational state, kept by `clean`: luigid's state, history database, pid/address files and logs; cron logs
SCHEDULER_DIR ?= var/scheduler
PIPELINE_LOG_DIR ?= var/log

.DEFAULT_GOAL := help

.PHONY: lock demo bench-storage bench-service test-slow
.PHONY: help setup run test test-all test-kill bench bench-quick lint format clean clean-ops scheduler scheduler-stop scheduler-status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-17s %s\n", $$1, $$2}'

# The environment is installed from requirements.lock: every package (direct and pulled in), exact version
# and sha256 of its files, so two installs a month apart are the same. requirements.txt / requirements-dev.txt
# name the direct dependencies; `make lock` re-resolves them into the lock (after editing a pin).
$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the locked environment (requirements.lock, sha256-checked)

lock: | $(PY) ## re-resolve requirements*.txt into requirements.lock with hashes (uv; needs the package index)
	$(PY) -m pip install --quiet uv==0.9.9
	$(VENV)/bin/uv pip compile requirements-dev.txt --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements.lock

run: $(STAMP) ## train, evaluate and register the model on the embedded months (2021-01/02/03)
	$(PY) pipeline.py $(ARGS)

demo: $(STAMP) ## offline demo of the monthly loop on months built from the embedded ones: drift, retrain, gate (~1 min)
	$(PY) scripts/demo_monthly_loop.py

test: $(STAMP) ## fast test suite (unit, integration on small slices, recovery)
	$(PY) -m pytest -q

test-slow: $(STAMP) ## only the slow tests (end-to-end on the real months, SIGKILL points, two hosts on S3, benchmark smoke)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP) ## every test, including the slow end-to-end run on the real months
	$(PY) -m pytest -q -m ''

test-kill: $(STAMP) ## the SIGKILL test at 20 moments of the run (make test samples 3)
	KILL_POINTS=20 $(PY) -m pytest -q tests/recovery/test_kill_anywhere.py -s

bench: $(STAMP) ## all benchmarks (~1 h on 2 cores, idle machine): benchmarks/results.json, docs/benchmarks.md, S3 vs disk, the service
	$(PY) benchmarks/run.py $(ARGS)
	$(PY) benchmarks/s3_bench.py
	$(MAKE) bench-service ARGS=

# the production model `make run` registers: trained first if missing (a no-op of a few seconds when complete)
bench-service: $(STAMP) ## pipeline.py serve vs a naive FastAPI service on the production model (~4 min): benchmarks/service_results.json
	$(PY) pipeline.py > /dev/null
	$(PY) benchmarks/service_bench.py $(ARGS)

bench-storage: $(STAMP) ## object storage only: full run on a local S3 endpoint vs local disk, no-op rerun on S3 (~10 min)
	$(PY) benchmarks/s3_bench.py

bench-quick: $(STAMP) ## the benchmark at tiny sizes (about a minute; results in a temporary folder)
	$(PY) benchmarks/run.py --quick

lint: $(STAMP) ## ruff (style, complexity C901 <= 10) and mypy (types), both clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

scheduler: $(STAMP) ## start luigid on 127.0.0.1 (port: SCHEDULER_PORT, default 8082; state, logs, history: var/scheduler)
	bin/scheduler start

scheduler-stop: ## stop luigid (it saves its state on a clean shutdown)
	bin/scheduler stop

scheduler-status: ## is luigid running, and on which port?
	bin/scheduler status

# holds the run's lock on var/work (an flock on the directory, tasks/ops/lock.py) while removing: refused while
# a run holds it, and no run starts meanwhile
clean: ## remove pipeline outputs (var/work, models), refused during a run; keeps the venv, luigid's state/history, logs
	@mkdir -p var/work && flock --nonblock --conflict-exit-code 75 var/work rm -rf var/work models; code=$$?; \
	  if [ $$code = 75 ]; then echo "make clean: a run holds var/work (var/work/.pipeline.lock names it); let it finish or stop it, then run make clean again" >&2; fi; \
	  exit $$code

clean-ops: ## remove luigid's state, history db, pid file and logs, and cron logs (refused while luigid runs)
	@if SCHEDULER_DIR="$(SCHEDULER_DIR)" bin/scheduler status >/dev/null 2>&1; then \
	  echo "luigid is running ($$(SCHEDULER_DIR="$(SCHEDULER_DIR)" bin/scheduler status)): run 'make scheduler-stop' first" >&2; exit 1; fi
	rm -rf "$(SCHEDULER_DIR)" "$(PIPELINE_LOG_DIR)"
