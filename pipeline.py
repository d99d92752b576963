#!/usr/bin/env python
"""Entry point of the pipeline: ``tripduration COMMAND ...`` (the console script ``make setup`` installs)
and ``python pipeline.py COMMAND ...`` are the same command line.

    tripduration [train] [--train-months ...] [--val-month M] [--test-month M]   TrainingPipeline (default)
    tripduration monthly [--month YYYY-MM|last]                                 MonthlyTraining
    tripduration backfill --start YYYY-MM --stop YYYY-MM | --last N             MonthlyTraining for a span
    tripduration monthly-run [--month YYYY-MM|last]         predict, monitor, retrain if needed (MonthlyRun)
    tripduration daily [--now YYYY-MM-DDTHH:MM]              the loop from cron: every month whose data arrived
    tripduration status [JOB [JOB ARGS]]          which tasks of a job are complete, which would run, why
    tripduration invalidate TASK_FAMILY [--param value ...]   rerun a task and its downstream next time
    tripduration serve [--host H] [--port P] [--workers N]    HTTP service (FastAPI, uvicorn)
    tripduration models [--json]                              registered versions, status, metrics, reasons
    tripduration rollback vNNNN [--reason ...] [--force]      point production back at a version
    tripduration export-mlflow [--tracking-uri URI]           mirror the registry into MLflow

``tripduration --help`` lists the commands, ``tripduration COMMAND --help`` a command's options. The parser
and the commands are in tasks/cli/; this file prepares the process (threads, this project's luigi.cfg)
before anything loads numpy or a task, and registers every task: ``python -m luigi --module pipeline
TrainingPipeline --local-scheduler`` works too. It works from any working directory: it reads the
``luigi.cfg`` next to this file (``$LUIGI_CONFIG_PATH`` overrides it). Exit codes: docs/operations.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# First, before anything loads numpy/scikit-learn: OpenMP threads spin only briefly, and no more native threads
# than usable CPUs (libgomp reads its environment once, when scikit-learn loads it). Forked task processes
# and child processes inherit it; see tripduration/runtime/threads.py.
from tripduration.runtime.threads import prepare_process  # noqa: E402

prepare_process()

from luigi.configuration import LuigiConfigParser  # noqa: E402


def use_project_config() -> None:
    """Read this project's luigi.cfg whatever the working directory (cron starts jobs in $HOME).

    It goes right after luigi's own default locations and before ``$LUIGI_CONFIG_PATH``, so a machine's or
    a test's override file still wins over the project defaults.
    """
    own = str(ROOT / "luigi.cfg")
    paths = LuigiConfigParser._config_paths
    if own not in paths:
        position = paths.index("luigi.cfg") + 1 if "luigi.cfg" in paths else len(paths)
        override = os.environ.get("LUIGI_CONFIG_PATH")
        if override in paths:
            position = min(position, paths.index(override))
        paths.insert(position, own)
        LuigiConfigParser.reload()


use_project_config()

from tasks import *  # noqa: E402,F403 - registers every task with luigi
from tasks.ops.config_check import check_when_luigi_imports  # noqa: E402

# `luigi --module pipeline TASK ...`: the same check as `tripduration`, with luigi's flags (exit 2, one line)
check_when_luigi_imports("luigi --module pipeline")

from tasks.cli.jobs import last_months, tasks_for  # noqa: E402,F401 - for tests and scripts
from tasks.cli.main import main  # noqa: E402
from tasks.cli.parser import build_parser  # noqa: E402,F401 - for tests and scripts

if __name__ == "__main__":
    sys.exit(main())
