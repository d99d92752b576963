# Self-documenting: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
PIP_HASHED := $(PY) -m pip install --quiet --require-hashes
# operational state, kept by `clean`: luigid's state, history database, pid/address files and logs; cron logs
SCHEDULER_DIR ?= var/scheduler
PIPELINE_LOG_DIR ?= var/log

.DEFAULT_GOAL := help

.PHONY: lock demo bench-storage bench-service test-slow
.PHONY: help setup setup-s3 setup-mlflow setup-dev run status models serve test test-all test-kill bench bench-quick lint format clean clean-ops scheduler scheduler-stop scheduler-status

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-17s %s\n", $$1, $$2}'

# The environment is installed from hashed locks: every package (direct and pulled in), exact version and
# sha256 of its files, so two installs a month apart are the same. requirements*.txt name the direct
# dependencies; `make lock` (scripts/lock.sh) re-resolves them all, in one resolution, into their locks:
#   requirements.lock        the runtime: training, luigid, the HTTP service (make setup, make run)
#   requirements-build.lock  setuptools, which installs this project and its `tripduration` command
#   requirements-s3.lock, requirements-mlflow.lock   the optional extras, each on top of the runtime
#   requirements-dev.lock    the test and lint tools (make setup-dev; make test and make lint add it)
$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock requirements-build.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_HASHED) -r requirements.lock -r requirements-build.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

$(VENV)/.installed-s3 $(VENV)/.installed-mlflow: $(VENV)/.installed-%: requirements-%.lock $(STAMP)
	$(PIP_HASHED) -r requirements.lock -r requirements-$*.lock
	touch $@

$(DEV_STAMP): requirements-dev.lock $(VENV)/.installed-s3 $(VENV)/.installed-mlflow
	$(PIP_HASHED) -r requirements.lock -r requirements-s3.lock -r requirements-mlflow.lock -r requirements-dev.lock
	touch $@

setup: $(STAMP) ## create .venv: the runtime (requirements.lock, sha256-checked) and the `tripduration` command
setup-s3: $(VENV)/.installed-s3 ## add the optional `s3` extra (boto3, for s3:// paths), sha256-checked
setup-mlflow: $(VENV)/.installed-mlflow ## add the optional `mlflow` extra (tripduration export-mlflow), sha256-checked
setup-dev: $(DEV_STAMP) ## add both extras and the test and lint tools (what make test and make lint use)

lock: | $(PY) ## re-resolve requirements*.txt into every requirements*.lock with hashes (uv; needs the package index)
	$(PY) -m pip install --quiet uv==0.9.9
	UV=$(VENV)/bin/uv scripts/lock.sh

run: $(STAMP) ## train, evaluate and register the model on the embedded months (2021-01/02/03); or ARGS="monthly ..."
	$(VENV)/bin/tripduration $(ARGS)

status: $(STAMP) ## which tasks of the job are complete, which would run and why (ARGS="monthly --month 2021-03")
	$(VENV)/bin/tripduration status $(ARGS)

models: $(STAMP) ## the registered model versions: status, metrics, the gate's reasons
	$(VENV)/bin/tripduration models $(ARGS)

serve: $(STAMP) ## serve the production model on http://127.0.0.1:8000 (ARGS="--port 9000 --workers 2")
	$(VENV)/bin/tripduration serve $(ARGS)

demo: $(STAMP) ## offline demo of the loop left to cron: late months, a deferred retrain and its resume, the event log (~1 min)
	$(PY) scripts/demo_monthly_loop.py

test: $(DEV_STAMP) ## fast test suite (unit, integration on small slices, recovery)
	$(PY) -m pytest -q

test-slow: $(DEV_STAMP) ## only the slow tests (end-to-end on the real months, SIGKILL points, two hosts on S3, benchmark smoke)
	$(PY) -m pytest -q -m slow

test-all: $(DEV_STAMP) ## every test, including the slow end-to-end run on the real months
	$(PY) -m pytest -q -m ''

test-kill: $(DEV_STAMP) ## the SIGKILL test at 20 moments of the run (make test samples 3)
	KILL_POINTS=20 $(PY) -m pytest -q tests/recovery/test_kill_anywhere.py -s

bench: $(DEV_STAMP) ## all benchmarks (~1 h on 2 cores, idle machine): benchmarks/results.json, docs/benchmarks.md, S3 vs disk, the service
	$(PY) benchmarks/run.py $(ARGS)
	$(PY) benchmarks/s3_bench.py
	$(MAKE) bench-service ARGS=

# the production model `make run` registers: trained first if missing (a no-op of a few seconds when complete)
bench-service: $(STAMP) ## pipeline.py serve vs a naive FastAPI service on the production model (~4 min): benchmarks/service_results.json
	$(PY) pipeline.py > /dev/null
	$(PY) benchmarks/service_bench.py $(ARGS)

bench-storage: $(DEV_STAMP) ## object storage only: full run on a local S3 endpoint vs local disk, no-op rerun on S3 (~10 min)
	$(PY) benchmarks/s3_bench.py

bench-quick: $(DEV_STAMP) ## the benchmark at tiny sizes (about a minute; results in a temporary folder)
	$(PY) benchmarks/run.py --quick

lint: $(DEV_STAMP) ## ruff (style, complexity C901 <= 10), mypy (types), import-linter (the layers), all clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(DEV_STAMP) ## apply ruff's fixes and formatting
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
