"""Parse the command line, check luigi.cfg, run the command; every refusal is one line and a documented code.

- a bad argument: argparse's one line (:class:`tasks.cli.parser.OneLineParser`), exit 2;
- a bad luigi.cfg value, values that clash together, a missing optional extra: one line, exit 2;
- a registry, service or MLflow command that fails on something else (a tampered version, a port in use,
  an unreachable tracking server): one line, exit 1;
- a luigi job: luigi's ``[retcode]`` codes and 45/46 (tasks/ops/runner.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable

from tasks.cli.errors import BAD_ARGUMENTS, COMMAND_FAILED, UsageError
from tasks.cli.invalidate import invalidate_command
from tasks.cli.jobs import daily_command, job_command, status_command
from tasks.cli.parser import build_parser, with_default_job
from tasks.cli.registry import export_mlflow_command, registry_command
from tasks.cli.values import one_line
from tasks.ops.config_check import ConfigurationError, check_configuration
from tripduration.runtime.extras import MissingExtraError, as_missing_extra


def checked_configuration() -> None:
    """Every luigi.cfg value, before anything is read or written."""
    try:
        check_configuration()
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def guarded(prog: str, command: str, action: Callable[[], int]) -> int:
    """Run a command that is not a luigi job: a failure that is not a usage error is one line, exit 1."""
    try:
        return action()
    except UsageError:
        raise
    except Exception as exc:
        missing = as_missing_extra(exc)
        if missing is not None:  # boto3 or mlflow not installed: one line naming the extra, exit 2
            raise missing from None
        print(f"{prog} {command}: error: {one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return COMMAND_FAILED


def dispatch(args: argparse.Namespace, today: dt.date | None, prog: str) -> int:
    checked_configuration()
    if args.command in ("train", "monthly", "backfill", "monthly-run"):
        return job_command(args, today, prog)
    if args.command == "daily":
        return daily_command(args, today, prog)
    if args.command == "status":
        return guarded(prog, "status", lambda: status_command(args, today))
    if args.command == "invalidate":
        return guarded(prog, "invalidate", lambda: invalidate_command(args))
    if args.command == "export-mlflow":
        return guarded(prog, args.command, lambda: export_mlflow_command(args))
    return guarded(prog, args.command, lambda: registry_command(args, prog))


def main(argv: list[str] | None = None, today: dt.date | None = None) -> int:
    """Parse ``argv``, run the command, return the exit code; ``today`` is for tests of ``last``/``--last N``."""
    parser = build_parser()
    args = parser.parse_args(with_default_job(list(sys.argv[1:] if argv is None else argv)))
    try:
        return dispatch(args, today, parser.prog)
    except (UsageError, MissingExtraError) as exc:
        print(f"{parser.prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return BAD_ARGUMENTS
    except ImportError as exc:  # a luigi job's own process importing boto3 without the s3 extra
        missing = as_missing_extra(exc)
        if missing is None:
            raise
        print(f"{parser.prog}: error: {missing}", file=sys.stderr)
        return BAD_ARGUMENTS
