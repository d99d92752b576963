#!/usr/bin/env python
"""Entry point of the pipeline.

    python pipeline.py [train] [--train-months ...] [--val-month M] [--test-month M]   TrainingPipeline
    python pipeline.py monthly [--month YYYY-MM|last]                                 MonthlyTraining
    python pipeline.py backfill --start YYYY-MM --stop YYYY-MM                        RangeMonthly backfill
    python pipeline.py backfill --last N                 the N months that ended before today (cron)
    python pipeline.py monthly-run [--month YYYY-MM|last]        predict, monitor, retrain if needed (MonthlyRun)
    python pipeline.py serve [--host 127.0.0.1] [--port 8000] [--workers N]   HTTP service (FastAPI, uvicorn)
    python pipeline.py models                                    registered versions, status, metrics, reasons
    python pipeline.py rollback vNNNN [--reason ...]             point production back at a version
    python pipeline.py export-mlflow [--tracking-uri URI]        mirror the registry into MLflow (runs, aliases)
    python pipeline.py status [JOB ARGS]                 which tasks of a job are complete, which would run, why
    python pipeline.py invalidate TASK_FAMILY [--param value ...]   rerun a task and its downstream next time

Common flags: ``--color``, ``--workers N``, ``--scheduler-host/--scheduler-port`` (central scheduler; the
local scheduler is used otherwise). Works from any working directory: it reads the ``luigi.cfg`` next to
this file (``$LUIGI_CONFIG_PATH`` overrides it). Exit codes are luigi's ``[retcode]`` codes in luigi.cfg:
0 success, 10 already running, 20 missing input data, 25 not run, 30 a task failed, 35 scheduling error,
40 unhandled exception; and 2 bad arguments, 45 no central scheduler at the given address, 46 the central
scheduler was lost during the run (docs/operations.md).
``python -m luigi --module pipeline TrainingPipeline --local-scheduler`` also works,
because importing this module registers every task.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# First, before anything loads numpy/scikit-learn: OpenMP threads spin only briefly, and no more native threads
# than usable CPUs (libgomp reads its environment once, when scikit-learn loads it). Forked task processes
# and child processes inherit it; see tripduration/runtime/threads.py.
from tripduration.runtime.threads import prepare_process  # noqa: E402

prepare_process()

import luigi  # noqa: E402
import luigi.interface  # noqa: E402
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

from luigi.tools.range import RangeMonthly  # noqa: E402

from tasks import *  # noqa: E402,F403 - registers every task with luigi
from tasks import MonthlyRun, MonthlyTraining, TrainingPipeline  # noqa: E402
from tasks.ops.config_check import ConfigurationError, check_configuration, check_when_luigi_imports  # noqa: E402
from tasks.ops.inspect import format_status, invalidate, job_status  # noqa: E402
from tasks.ops.result import result_block  # noqa: E402
from tasks.ops.runner import JobOutcome, run  # noqa: E402
from tripduration.data.months import COLORS, add_months, format_month, parse_month, parse_month_list  # noqa: E402
from tripduration.registry.names import GateRejectedError, check_version  # noqa: E402
from tripduration.registry.store import ModelRegistry  # noqa: E402

# `luigi --module pipeline TASK ...`: the same check as `python pipeline.py`, with luigi's flags (exit 2, one line)
check_when_luigi_imports("luigi --module pipeline")

COMMANDS = ("train", "monthly", "backfill", "monthly-run", "daily", "serve", "models", "rollback", "export-mlflow")
JOB_COMMANDS = ("train", "monthly", "backfill", "monthly-run")
LOG_FORMAT = "%(asctime)s %(levelname)s: %(message)s"


LAST = "last"
MAX_WORKERS = 256
MAX_LAST_MONTHS = 120


def _month(value: str) -> dt.date:
    try:
        return parse_month(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _month_or_last(value: str) -> dt.date | str:
    """A month, or ``last``: resolved against today's date when the tasks are made (see :func:`tasks_for`)."""
    return LAST if value == LAST else _month(value)


def _moment(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date or date-time such as 2026-12-06T08:00") from None
    return moment if moment.tzinfo else moment.astimezone()


def _version(value: str) -> str:
    try:
        return check_version(value, "version")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("version: ")) from None


def _months(value: str) -> tuple[dt.date, ...]:
    try:
        return parse_month_list(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def int_in_range(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``; the error names the value and the range.

    argparse prefixes the option's name, so the one-line error reads
    ``argument --workers: 0 is out of range: give an integer from 1 to 256 (worker processes)``.
    """

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not an integer: give an integer from {low} to {high} ({what})"
            ) from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is out of range: give an integer from {low} to {high} ({what})")
        return number

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def last_months(n: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last of the ``n`` months that ended before ``today`` (the current month is never included).

    Computed from the month number, never by subtracting days: ``date -d 'last month'`` on 31 March gives
    "31 February", normalised to 3 March, i.e. the current, unfinished month.
    """
    if n < 1:
        raise ValueError(f"--last {n}: give at least 1 month")
    stop = add_months(parse_month(today), -1)
    return add_months(stop, -(n - 1)), stop


def build_parser() -> argparse.ArgumentParser:
    workers = int_in_range(1, MAX_WORKERS, "worker processes")
    port = int_in_range(1, 65535, "TCP port")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--color", default="green", choices=COLORS, help="taxi colour (default green)")
    common.add_argument(
        "--workers", type=workers, default=None, help=f"parallel worker processes, 1-{MAX_WORKERS} ([core] workers)"
    )
    common.add_argument("--scheduler-host", default=None, help="use the central scheduler (luigid) on this host")
    common.add_argument("--scheduler-port", type=port, default=None, help="port of the central scheduler, 1-65535")

    parser = argparse.ArgumentParser(description="Train, evaluate and register the NYC taxi trip-duration model.")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", parents=[common], help="TrainingPipeline for explicit months (default)")
    train.add_argument(
        "--train-months", type=_months, default=None, help="2021-01 | 2021-01,2021-02 | 2021-01..2021-06"
    )
    train.add_argument("--val-month", type=_month, default=None, help="validation month, YYYY-MM")
    train.add_argument("--test-month", type=_month, default=None, help="test month, YYYY-MM")
    monthly = sub.add_parser("monthly", parents=[common], help="MonthlyTraining for one month (cron)")
    monthly.add_argument("--month", type=_month_or_last, default=LAST, help="test month M, or 'last' (default)")
    backfill = sub.add_parser("backfill", parents=[common], help="MonthlyTraining for every month of a span")
    span = backfill.add_mutually_exclusive_group(required=True)
    span.add_argument(
        "--last",
        type=int_in_range(1, MAX_LAST_MONTHS, "months"),
        default=None,
        help="the N months that ended before today (cron: right on every day of the year)",
    )
    span.add_argument("--start", type=_month, default=None, help="first month, inclusive (with --stop)")
    backfill.add_argument("--stop", type=_month, default=None, help="last month, inclusive (with --start)")
    run_month = sub.add_parser("monthly-run", parents=[common], help="MonthlyRun: predict, monitor, retrain if needed")
    run_month.add_argument("--month", type=_month_or_last, default=LAST, help="month M, or 'last' (default)")
    loop = sub.add_parser(
        "daily", parents=[common], help="the monthly loop from cron: every month whose data arrived, in order"
    )
    loop.add_argument(
        "--now",
        type=_moment,
        default=None,
        help="the date and time the run takes as now, YYYY-MM-DD[THH:MM] (default: now; for replays and tests)",
    )
    serve = sub.add_parser("serve", help="serve the production model over HTTP")
    serve.add_argument("--color", default="green", choices=COLORS)
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int_in_range(0, 65535, "TCP port, 0: any free port"), default=8000)
    serve.add_argument("--workers", type=int_in_range(1, 64, "uvicorn worker processes"), default=1)
    serve.add_argument(
        "--limit-concurrency", type=int_in_range(1, 10000, "connections at once; over it: 503"), default=64
    )
    serve.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle keep-alive connection stays")
    serve.add_argument("--body-timeout", type=float, default=10.0, help="seconds to receive a request body (408)")
    models = sub.add_parser("models", help="list registered model versions")
    models.add_argument("--color", default="green", choices=COLORS)
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rollback = sub.add_parser("rollback", help="make an earlier version the production model")
    rollback.add_argument("version", type=_version, help="version to serve, e.g. v0001")
    rollback.add_argument("--color", default="green", choices=COLORS)
    rollback.add_argument("--reason", default="manual rollback", help="recorded in production.json and history")
    rollback.add_argument("--force", action="store_true", help="roll back even to a version the quality gate rejected")
    add_export_mlflow_parser(sub)
    return parser


def add_export_mlflow_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export-mlflow", help="mirror the registry into MLflow (runs, model versions, aliases)")
    export.add_argument("--color", default="green", choices=COLORS)
    export.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (sqlite:///path/mlflow.db, http://127.0.0.1:5000); "
        "default: [mlflow] tracking_uri in luigi.cfg, then $MLFLOW_TRACKING_URI",
    )
    export.add_argument(
        "--artifact-location",
        default=None,
        help="artifact root of the experiment when it is created (default: mlartifacts/ beside a sqlite "
        "database; the server's own default for a tracking server)",
    )
    export.add_argument("--json", action="store_true", help="print the result as JSON")


def mlflow_tracking_uri(given: str | None) -> str | None:
    """--tracking-uri, else ``[mlflow] tracking_uri`` (a relative sqlite path is relative to this project's
    folder, like every path of luigi.cfg), else ``$MLFLOW_TRACKING_URI``."""
    from tasks.settings import MlflowConfig
    from tripduration.registry.mlflow_export import sqlite_uri_relative_to

    if given:
        return given
    configured = MlflowConfig().tracking_uri
    if configured.strip():
        return sqlite_uri_relative_to(configured.strip(), ROOT)
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def export_mlflow_command(args: argparse.Namespace) -> int:
    """export-mlflow: exit 0 when every version is mirrored, 1 when one failed, 2 without a tracking URI."""
    import json

    from tasks.predictions import model_registry
    from tripduration.registry.mlflow_export import export_registry, format_summary

    uri = mlflow_tracking_uri(args.tracking_uri)
    if uri is None:
        print(
            "pipeline.py export-mlflow: error: no MLflow tracking URI: pass --tracking-uri URI, or set "
            "[mlflow] tracking_uri in luigi.cfg, or $MLFLOW_TRACKING_URI",
            file=sys.stderr,
        )
        return 2
    result = export_registry(model_registry(args.color), uri, args.artifact_location)
    print(json.dumps(result, indent=2) if args.json else format_summary(result), flush=True)
    return 1 if result["errors"] else 0


def registry_commands(args: argparse.Namespace) -> int:
    """serve / models / rollback: work on the registry directly, no luigi run."""
    import logging

    from tasks.predictions import model_registry

    registry = model_registry(args.color)
    if args.command == "serve":
        from tripduration.service.server import ServeOptions, serve

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        options = ServeOptions(
            args.host,
            args.port,
            args.workers,
            args.limit_concurrency,
            keep_alive=args.keep_alive,
            body_timeout=args.body_timeout,
        )
        return serve(registry, options, announce=lambda line: print(line, flush=True))
    if args.command == "models":
        return models_command(registry, as_json=args.json)
    return rollback_command(registry, args.version, args.reason, force=args.force)


def models_command(registry: ModelRegistry, as_json: bool = False) -> int:
    """List the valid versions and name every problem (bad pointer, incomplete folder, failed sha256...).

    Exit 0 whenever the listing itself could be made, problems included: ``models`` is how an operator
    inspects a damaged registry, so it must not fail on what it reports; scripts check ``problems`` in
    ``--json`` (empty when the registry is sound). The commands that use a model refuse bad ones themselves.
    """
    import json

    inventory = registry.inventory()
    rows, problems = inventory["versions"], inventory["problems"]
    if as_json:
        print(json.dumps(inventory, indent=2))
        return 0
    if not rows and not problems:
        print(f"no versions registered under {registry.home}")
        return 0
    if rows:
        print(f"{'version':8} {'status':11} {'algorithm':15} {'test':8} {'rmse':>7} {'base':>7}  reason")
    for r in rows:
        print(
            f"{r['version']:8} {r['status']:11} {r['algorithm'] or '':15} {r['test_month'] or '':8} "
            f"{_number(r['test_rmse']):7.3f} {_number(r['baseline_rmse']):7.3f}  {_reason(r)}"
        )
    if problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  {problem['problem']}")
    return 0


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def _reason(row: dict) -> str:
    """The gate's reason, and for a production version set by a rollback, the rollback's reason too."""
    text = f"gate: {row['gate_reason']}" if row["gate_reason"] else "gate: none recorded"
    if row["rollback_reason"] is not None:
        forced = " (forced past the gate)" if row["forced"] else ""
        text += f" | rollback{forced}: {row['rollback_reason']}"
    return text


def rollback_command(registry: ModelRegistry, version: str, reason: str, force: bool = False) -> int:
    """Point production at ``version``; exit 2 with one line if the gate rejected it and --force is absent."""
    try:
        pointer = registry.rollback(version, reason, force=force)
    except GateRejectedError as exc:
        print(f"pipeline.py rollback: {exc}", file=sys.stderr)
        return 2
    was = pointer["previous_version"] or ("unreadable production.json" if "previous_pointer_error" in pointer else None)
    forced = " [forced past the gate's rejection]" if pointer.get("forced") else ""
    print(f"production is now {pointer['version']} (was {was}){forced}: {reason}")
    return 0


def resolve_month(month: dt.date | str, today: dt.date) -> dt.date:
    """``last`` is the month that ended before ``today``; any other value is already a month."""
    return add_months(parse_month(today), -1) if month == LAST else month  # type: ignore[return-value]


def backfill_span(args: argparse.Namespace, today: dt.date) -> tuple[dt.date, dt.date]:
    """(first, last) month of a backfill, inclusive: ``--last N``, or ``--start`` with ``--stop``."""
    if args.last is not None:
        if args.stop is not None:
            raise ValueError("backfill --last N counts back from today: leave out --stop (or use --start/--stop)")
        return last_months(args.last, today)
    if args.stop is None:
        raise ValueError("backfill --start needs --stop (or use --last N)")
    if args.stop < args.start:
        raise ValueError(f"backfill --start {format_month(args.start)} is after --stop {format_month(args.stop)}")
    return args.start, args.stop


def _range_monthly(args: argparse.Namespace, today: dt.date) -> RangeMonthly:
    start, stop = backfill_span(args, today)
    # RangeMonthly only looks at months_back months before its "now": pin now to the same today
    noon = dt.datetime(today.year, today.month, today.day, 12, tzinfo=dt.UTC)
    months_back = (today.year - start.year) * 12 + today.month - start.month + 1
    return RangeMonthly(
        of=MonthlyTraining,
        of_params={"color": args.color},
        start=start,
        stop=add_months(stop, 1),
        months_back=max(months_back, 13),
        now=int(noon.timestamp()),
    )


def tasks_for(args: argparse.Namespace, today: dt.date | None = None) -> list[luigi.Task]:
    """The tasks a command builds. ``today`` (default: the local date) decides ``last`` and ``--last N``."""
    today = today or dt.date.today()
    if args.command == "monthly":
        return [MonthlyTraining(month=resolve_month(args.month, today), color=args.color)]
    if args.command == "monthly-run":
        return [MonthlyRun(month=resolve_month(args.month, today), color=args.color)]
    if args.command == "backfill":
        return [_range_monthly(args, today)]
    given = {
        "train_months": args.train_months,
        "val_month": args.val_month,
        "test_month": args.test_month,
    }
    return [TrainingPipeline(color=args.color, **{k: v for k, v in given.items() if v is not None})]


def configured_workers_error() -> str | None:
    """luigi.cfg's ``[core] workers`` when no --workers is given: 0 would make luigi wait forever."""
    value = luigi.configuration.get_config().get("core", "workers", "1")
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not 1 <= number <= MAX_WORKERS:
        return f"[core] workers = {value} in luigi.cfg: give an integer from 1 to {MAX_WORKERS} (or pass --workers N)"
    return None


def timestamped_logging() -> None:
    """luigi's log lines with a date and time (its default format has none), so a user sees how long a task took."""
    import logging

    luigi.interface.InterfaceLogging.setup(luigi.interface.core())
    for handler in logging.getLogger("luigi-interface").handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))


def job_args(argv: list[str]) -> argparse.Namespace:
    """The arguments of a job command (``train`` when none is named)."""
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]
    return build_parser().parse_args(argv)


def status_command(argv: list[str], today: dt.date | None) -> int:
    """``pipeline.py status [JOB ARGS]``: which tasks of the job are complete, which would run and why."""
    args = job_args(argv)
    if args.command not in JOB_COMMANDS:
        print(
            f"pipeline.py status: error: give a job ({', '.join(JOB_COMMANDS)}), not {args.command!r}", file=sys.stderr
        )
        return 2
    print(format_status(job_status(tasks_for(args, today))))
    return 0


def invalidate_command(argv: list[str]) -> int:
    """``pipeline.py invalidate TASK_FAMILY [--param value ...]``: force that task and everything downstream of it
    to run again on the next run (new output folders; nothing else changes and nothing is deleted)."""
    from luigi.cmdline_parser import CmdlineParser

    from tasks.base import PipelineTask

    if not argv or argv[0].startswith("-"):
        print("usage: pipeline.py invalidate TASK_FAMILY [--param value ...]  (e.g. ValidatedTrips --month 2021-03)")
        return 2
    with CmdlineParser.global_instance(argv) as parser:
        check_configuration()  # with luigi's --section-key flags in effect, as in luigi --module pipeline
        task = parser.get_task_obj()
    if not isinstance(task, PipelineTask):
        print(f"pipeline.py invalidate: error: {task.task_family} has no outputs of its own to redo", file=sys.stderr)
        return 2
    mark = invalidate(task)
    print(f"invalidated {task.task_id} ({mark}): it and every task downstream of it run again on the next run")
    return 0


class UsageError(Exception):
    """A refusal before anything runs (bad configuration, option or months): one line, exit 2."""


def checked_configuration() -> None:
    """Every luigi.cfg value, before anything is read or written."""
    try:
        check_configuration()
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def guarded(command: str, action: Callable[[], int]) -> int:
    """Run a registry or MLflow command: an error (unknown version, tampered file, server down) is one line, exit 1."""
    try:
        return action()
    except Exception as exc:
        print(f"pipeline.py {command}: error: {exc}", file=sys.stderr)
        return 1


def job_command(args: argparse.Namespace, today: dt.date | None) -> int:
    """A luigi job (train, monthly, monthly-run, backfill, ...): build the graph, run it, print the result block."""
    problem = configured_workers_error() if args.workers is None else None
    if problem:
        raise UsageError(problem)
    timestamped_logging()
    try:
        tasks = tasks_for(args, today)
    except ValueError as exc:  # e.g. overlapping months: refused before anything runs
        raise UsageError(str(exc)) from None
    started = time.monotonic()
    outcome = JobOutcome(tasks)
    code = run(
        tasks,
        workers=args.workers,
        scheduler_host=args.scheduler_host,
        scheduler_port=args.scheduler_port,
        outcome=outcome,
    )
    if outcome.result is not None:  # the job ran (not refused up front): say what it produced
        print(result_block(outcome.tasks, outcome.result, code, time.monotonic() - started), file=sys.stderr)
    print(f"pipeline.py: {args.command} {' '.join(t.task_id for t in tasks)}: exit code {code}", file=sys.stderr)
    export_loop_state(args.color, args.command, code, dt.datetime.now().astimezone())
    return code


def daily_command(args: argparse.Namespace, today: dt.date | None) -> int:
    """The daily line: every month whose data arrived and is not done, in order; late months named."""
    from tasks.ops.daily import daily, report_lines
    from tripduration.runtime.clock import pinned

    problem = configured_workers_error() if args.workers is None else None
    if problem:
        raise UsageError(problem)
    timestamped_logging()
    now = args.now or dt.datetime.now().astimezone()
    if today is not None and args.now is None:  # tests of `main(..., today=...)`
        now = dt.datetime.combine(today, now.timetz())
    replay = now if args.now is not None or today is not None else None  # records and events carry it too
    with pinned(replay):
        code, outcome = daily(args.color, now, args.workers, (args.scheduler_host, args.scheduler_port))
        for line in report_lines(outcome, now):
            print(line, flush=True)
        export_loop_state(args.color, "daily", code, now, outcome.states)
    print(f"pipeline.py: daily {args.color}: exit code {code}", file=sys.stderr)
    return code


def export_loop_state(color: str, command: str, code: int, now: dt.datetime, states: object = None) -> None:
    from tasks.ops.loop_state import export

    export(color, command, code, now, states)  # type: ignore[arg-type]


def dispatch(argv: list[str], today: dt.date | None) -> int:
    if argv and argv[0] in ("status", "invalidate"):
        checked_configuration()
        return status_command(argv[1:], today) if argv[0] == "status" else invalidate_command(argv[1:])
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "train")
    args = build_parser().parse_args(argv)
    checked_configuration()
    if args.command == "export-mlflow":
        return guarded(args.command, lambda: export_mlflow_command(args))
    if args.command in ("serve", "models", "rollback"):
        return guarded(args.command, lambda: registry_commands(args))
    if args.command == "daily":
        return daily_command(args, today)
    return job_command(args, today)


def main(argv: list[str] | None = None, today: dt.date | None = None) -> int:
    """Parse ``argv``, run the command, return the exit code; ``today`` is for tests of ``last``/``--last``."""
    try:
        return dispatch(list(sys.argv[1:] if argv is None else argv), today)
    except (UsageError, ConfigurationError) as exc:  # ConfigurationError: e.g. invalidate's --section-key flags
        print(f"pipeline.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
