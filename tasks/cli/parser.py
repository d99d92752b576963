"""The parser of the command line: every command with its options, each option with a checked type.

``tripduration --help`` lists every command; ``tripduration COMMAND --help`` (and ``status JOB --help``,
``invalidate TASK_FAMILY --help``) lists that command's options and exits 0. A bad argument is one line on
stderr naming it, and exit 2 (:class:`OneLineParser`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from tasks.cli.errors import BAD_ARGUMENTS
from tasks.cli.invalidate import add_invalidate_parser
from tasks.cli.values import (
    HOST,
    LAST,
    MOMENT,
    MONTH,
    MONTH_OR_LAST,
    MONTHS,
    TEXT,
    TRACKING_URI,
    VERSION,
    int_in_range,
    number_in_range,
    one_line,
)
from tripduration.data.months import COLORS

PROGRAMS = ("tripduration", "pipeline.py")
JOB_COMMANDS = ("train", "monthly", "backfill", "monthly-run")
DEFAULT_JOB = "train"
MAX_WORKERS = 256
MAX_LAST_MONTHS = 120


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusals are one line on stderr: the command, the argument, what to give; exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_ARGUMENTS, f"{self.prog}: error: {one_line(message)} (see: {self.prog} --help)\n")


def program_name() -> str:
    """``tripduration`` (the console script) or ``pipeline.py``, as the user typed it."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in PROGRAMS else PROGRAMS[0]


def with_default_job(argv: list[str]) -> list[str]:
    """``train`` when no command (or, after ``status``, no job) is named: ``pipeline.py --workers 2``, ``status``.

    Only an empty list or one that starts with an option (other than ``-h``/``--help``) gets the default;
    an unknown word stays where it is, so that argparse names it as an invalid command.
    """
    if argv[:1] == ["status"]:
        return ["status", *with_default_job(argv[1:])]
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return [DEFAULT_JOB, *argv]
    return list(argv)


def add_color(parser: argparse.ArgumentParser) -> None:
    """``--color``, which every command takes."""
    parser.add_argument("--color", default="green", choices=COLORS, help="taxi colour (default green)")


def common_options() -> argparse.ArgumentParser:
    """The options every job command takes."""
    common = OneLineParser(add_help=False)
    add_color(common)
    common.add_argument(
        "--workers",
        type=int_in_range(1, MAX_WORKERS, "worker processes"),
        default=None,
        help=f"parallel worker processes, 1-{MAX_WORKERS} ([core] workers)",
    )
    common.add_argument("--scheduler-host", type=HOST, default=None, help="use the central scheduler (luigid) there")
    common.add_argument(
        "--scheduler-port", type=int_in_range(1, 65535, "TCP port"), default=None, help="its port, 1-65535"
    )
    return common


def add_job_parsers(sub: argparse._SubParsersAction) -> None:
    """train, monthly, backfill, monthly-run: as commands, and as the jobs ``status`` looks at."""
    common = common_options()
    train = sub.add_parser("train", parents=[common], help="TrainingPipeline for explicit months (the default command)")
    train.add_argument("--train-months", type=MONTHS, default=None, help="2021-01 | 2021-01,2021-02 | 2021-01..2021-06")
    train.add_argument("--val-month", type=MONTH, default=None, help="validation month, YYYY-MM")
    train.add_argument("--test-month", type=MONTH, default=None, help="test month, YYYY-MM")
    monthly = sub.add_parser("monthly", parents=[common], help="MonthlyTraining for one month (cron)")
    monthly.add_argument("--month", type=MONTH_OR_LAST, default=LAST, help="test month M, or 'last' (default)")
    backfill = sub.add_parser("backfill", parents=[common], help="MonthlyTraining for every month of a span")
    span = backfill.add_mutually_exclusive_group(required=True)
    span.add_argument(
        "--last",
        type=int_in_range(1, MAX_LAST_MONTHS, "months"),
        default=None,
        help="the N months that ended before today (cron: right on every day of the year)",
    )
    span.add_argument("--start", type=MONTH, default=None, help="first month, inclusive (with --stop)")
    backfill.add_argument("--stop", type=MONTH, default=None, help="last month, inclusive (with --start)")
    run_month = sub.add_parser("monthly-run", parents=[common], help="MonthlyRun: predict, monitor, retrain if needed")
    run_month.add_argument("--month", type=MONTH_OR_LAST, default=LAST, help="month M, or 'last' (default)")
    for name, parser in (("train", train), ("monthly", monthly), ("backfill", backfill), ("monthly-run", run_month)):
        parser.set_defaults(job=name)


def add_daily_parser(sub: argparse._SubParsersAction) -> None:
    """daily: the one crontab line (docs/operations.md#cron)."""
    daily = sub.add_parser(
        "daily",
        parents=[common_options()],
        help="the monthly loop from cron: every month whose data arrived and is not done, in order",
        description="Every month from [monthly] first_month to the last one that ended: run the ones whose data "
        "has arrived and that are not done (MonthlyRun), resume deferred retrains whose months arrived, name "
        "the months not published yet (exit 0) and those overdue (exit 20).",
    )
    daily.add_argument(
        "--now",
        type=MOMENT,
        default=None,
        help="the moment the run takes as now, YYYY-MM-DD[THH:MM] (default: now; replays and tests)",
    )


def add_status_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status",
        help="which tasks of a job are complete, which would run, and why (runs nothing)",
        description="Which tasks of a job are complete, which would run, and why; nothing is run or written. "
        "JOB and its options as for the job itself (default: train); 'status JOB --help' lists them.",
    )
    add_job_parsers(status.add_subparsers(dest="job", metavar="JOB", title="jobs"))


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve the production model over HTTP (FastAPI, uvicorn)")
    add_color(serve)
    serve.add_argument("--host", type=HOST, default="127.0.0.1", help="interface (default 127.0.0.1: this machine)")
    serve.add_argument(
        "--port", type=int_in_range(0, 65535, "TCP port, 0: any free port"), default=8000, help="default 8000"
    )
    serve.add_argument(
        "--workers", type=int_in_range(1, 64, "uvicorn worker processes"), default=1, help="processes, 1-64"
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int_in_range(1, 10000, "connections at once; over it: 503"),
        default=64,
        help="connections at once, 1-10000 (default 64); over it: 503",
    )
    serve.add_argument(
        "--keep-alive",
        type=number_in_range(1, 3600, "seconds an idle keep-alive connection stays"),
        default=5.0,
        help="seconds an idle keep-alive connection stays, 1-3600 (default 5)",
    )
    serve.add_argument(
        "--body-timeout",
        type=number_in_range(0.1, 3600, "seconds to receive a request body"),
        default=10.0,
        help="seconds to receive a request body (then 408), 0.1-3600 (default 10)",
    )


def add_registry_parsers(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="registered versions, status, metrics, reasons, registry problems")
    add_color(models)
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rollback = sub.add_parser("rollback", help="make an earlier version the production model")
    rollback.add_argument("version", type=VERSION, help="registered version to serve, e.g. v0001 (see: models)")
    add_color(rollback)
    rollback.add_argument(
        "--reason", type=TEXT, default="manual rollback", help="one line, recorded in production.json and history"
    )
    rollback.add_argument("--force", action="store_true", help="roll back even to a version the quality gate rejected")
    export = sub.add_parser("export-mlflow", help="mirror the registry into MLflow (runs, model versions, aliases)")
    add_color(export)
    export.add_argument(
        "--tracking-uri",
        type=TRACKING_URI,
        default=None,
        help="MLflow tracking URI (sqlite:///path/mlflow.db, http://127.0.0.1:5000); "
        "default: [mlflow] tracking_uri in luigi.cfg, then $MLFLOW_TRACKING_URI",
    )
    export.add_argument(
        "--artifact-location",
        type=TEXT,
        default=None,
        help="artifact root of the experiment when it is created (default: mlartifacts/ beside a sqlite "
        "database; the server's own default for a tracking server)",
    )
    export.add_argument("--json", action="store_true", help="print the result as JSON")


def build_parser() -> OneLineParser:
    """Every command. With no command, ``train`` runs (``python pipeline.py`` trains on the embedded months)."""
    prog = program_name()
    parser = OneLineParser(
        prog=prog,
        description="Train, evaluate, register, serve and monitor the NYC taxi trip-duration model.",
        epilog=f"With no COMMAND, {prog} runs 'train'. '{prog} COMMAND --help' lists a command's options. "
        "Exit codes: docs/operations.md#exit-codes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    add_job_parsers(sub)
    add_daily_parser(sub)
    add_status_parser(sub)
    add_invalidate_parser(sub)
    add_serve_parser(sub)
    add_registry_parsers(sub)
    return parser
