#!/usr/bin/env python
"""Entry point: ``python pipeline.py [options]`` runs TrainingPipeline.

Works from any working directory: it finds its own ``luigi.cfg`` and package folders next to this file.
Exit codes are luigi's ``[retcode]`` codes from luigi.cfg (0 success, 30 a task failed, 20 missing input
data, 10 already running, ...). ``luigi --module pipeline TrainingPipeline --local-scheduler`` also works
(from this folder, or with it on PYTHONPATH), because importing this module registers every task.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import luigi  # noqa: E402
import luigi.retcodes  # noqa: E402
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
from tasks import TrainingPipeline  # noqa: E402,F401
from tripduration.months import COLORS, format_month, parse_month, parse_month_list  # noqa: E402


def _month(value: str) -> str:
    try:
        return format_month(parse_month(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _months(value: str) -> str:
    try:
        return ",".join(format_month(m) for m in parse_month_list(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train, evaluate and register the NYC taxi trip-duration model.")
    parser.add_argument("--color", default=None, choices=COLORS, help="taxi colour (default green)")
    parser.add_argument(
        "--train-months", default=None, type=_months, help="e.g. 2021-01 or 2021-01,2021-02 or 2021-01..2021-06"
    )
    parser.add_argument("--val-month", default=None, type=_month, help="validation month, YYYY-MM")
    parser.add_argument("--test-month", default=None, type=_month, help="test month, YYYY-MM")
    parser.add_argument("--workers", type=int, default=None, help="parallel worker processes")
    parser.add_argument("--scheduler-host", default=None, help="use the central scheduler (luigid) on this host")
    parser.add_argument("--scheduler-port", type=int, default=None, help="port of the central scheduler")
    return parser


def luigi_argv(args: argparse.Namespace) -> list[str]:
    """Translate our flags into a luigi command line (so luigi's retcodes and summary apply)."""
    argv = ["TrainingPipeline"]
    for flag, value in (
        ("--color", args.color),
        ("--train-months", args.train_months),
        ("--val-month", args.val_month),
        ("--test-month", args.test_month),
        ("--workers", args.workers),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.scheduler_host or args.scheduler_port:
        argv += ["--scheduler-host", args.scheduler_host or "127.0.0.1"]
        if args.scheduler_port:
            argv += ["--scheduler-port", str(args.scheduler_port)]
    else:
        argv.append("--local-scheduler")
    return argv


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    luigi.retcodes.run_with_retcodes(luigi_argv(args))


if __name__ == "__main__":
    main()
