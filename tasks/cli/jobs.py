"""The luigi jobs of the command line (train, monthly, backfill, monthly-run) and ``status`` of one of them."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import luigi
import luigi.interface
from luigi.tools.range import RangeMonthly

from tasks import MonthlyRun, MonthlyTraining, TrainingPipeline
from tasks.cli.errors import UsageError
from tasks.cli.parser import MAX_WORKERS
from tasks.cli.values import LAST
from tasks.ops.daily import daily, report_lines
from tasks.ops.inspect import format_status, job_status
from tasks.ops.loop_state import export
from tasks.ops.result import result_block
from tasks.ops.runner import JobOutcome, run
from tripduration.data.months import add_months, format_month, parse_month
from tripduration.runtime.clock import pinned

LOG_FORMAT = "%(asctime)s %(levelname)s: %(message)s"


def last_months(n: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last of the ``n`` months that ended before ``today`` (the current month is never included).

    Computed from the month number, never by subtracting days: ``date -d 'last month'`` on 31 March gives
    "31 February", normalised to 3 March, i.e. the current, unfinished month.
    """
    if n < 1:
        raise ValueError(f"--last {n}: give at least 1 month")
    stop = add_months(parse_month(today), -1)
    return add_months(stop, -(n - 1)), stop


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
        param_name="month",  # named, not positional: luigi warns on every build when it is left None
        start=start,
        stop=add_months(stop, 1),
        months_back=max(months_back, 13),
        now=int(noon.timestamp()),
    )


def tasks_for(args: argparse.Namespace, today: dt.date | None = None) -> list[luigi.Task]:
    """The tasks a job builds (``args.job``). ``today`` (default: the local date) decides ``last``/``--last N``."""
    today = today or dt.date.today()
    if args.job == "monthly":
        return [MonthlyTraining(month=resolve_month(args.month, today), color=args.color)]
    if args.job == "monthly-run":
        return [MonthlyRun(month=resolve_month(args.month, today), color=args.color)]
    if args.job == "backfill":
        return [_range_monthly(args, today)]
    given = {
        "train_months": args.train_months,
        "val_month": args.val_month,
        "test_month": args.test_month,
    }
    return [TrainingPipeline(color=args.color, **{k: v for k, v in given.items() if v is not None})]


def checked_tasks(args: argparse.Namespace, today: dt.date | None) -> list[luigi.Task]:
    """:func:`tasks_for`, with values that clash together (overlapping months, --start after --stop, no
    production model to monitor) refused as bad arguments: one line, exit 2, before anything is written."""
    try:
        return tasks_for(args, today)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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


def refuse_bad_workers(args: argparse.Namespace) -> None:
    """Without --workers, a bad ``[core] workers`` is a usage error (exit 2) before anything runs."""
    problem = configured_workers_error() if args.workers is None else None
    if problem:
        raise UsageError(problem)


def timestamped_logging() -> None:
    """luigi's log lines with a date and time (its default format has none), so a user sees how long a task took."""
    import logging

    luigi.interface.InterfaceLogging.setup(luigi.interface.core())
    for handler in logging.getLogger("luigi-interface").handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))


def status_command(args: argparse.Namespace, today: dt.date | None) -> int:
    """``status [JOB ARGS]``: which tasks of the job are complete, which would run and why."""
    print(format_status(job_status(checked_tasks(args, today))))
    return 0


def job_command(args: argparse.Namespace, today: dt.date | None, prog: str) -> int:
    """A luigi job (train, monthly, monthly-run, backfill): build the graph, run it, print the result block."""
    refuse_bad_workers(args)
    tasks = checked_tasks(args, today)  # refused before anything runs
    timestamped_logging()
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
    print(f"{prog}: {args.job} {' '.join(t.task_id for t in tasks)}: exit code {code}", file=sys.stderr)
    export(args.color, args.job, code, dt.datetime.now().astimezone())
    return code


def daily_command(args: argparse.Namespace, today: dt.date | None, prog: str) -> int:
    """The daily line: every month whose data arrived and is not done, in order; late months named."""
    refuse_bad_workers(args)
    timestamped_logging()
    now = args.now or dt.datetime.now().astimezone()
    if today is not None and args.now is None:  # tests of `main(..., today=...)`
        now = dt.datetime.combine(today, now.timetz())
    replay = now if args.now is not None or today is not None else None  # records and events carry it too
    with pinned(replay):
        code, outcome = daily(args.color, now, args.workers, (args.scheduler_host, args.scheduler_port))
        for line in report_lines(outcome, now):
            print(line, flush=True)
        export(args.color, "daily", code, now, outcome.states)
    print(f"{prog}: daily {args.color}: exit code {code}", file=sys.stderr)
    return code
