"""``invalidate TASK_FAMILY [--param value ...]``: its parser, made from the tasks' own luigi parameters.

Each task family with outputs of its own is a sub-command whose options are the task's parameters, each
parsed and checked by the parameter itself (``parse`` then ``normalize``: a month, a colour, a version
name...), so ``invalidate ValidatedTrips --month 2021-13`` is one line naming ``--month``, a missing
parameter is argparse's "the following arguments are required", and ``invalidate ValidatedTrips --help``
lists the parameters with their descriptions and defaults. Values that only clash together (overlapping
months) are refused when the task is made, before anything is written.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import luigi
from luigi.task_register import Register

from tasks.base import PipelineTask
from tasks.cli.errors import UsageError
from tasks.cli.values import Value, one_line
from tasks.ops.inspect import invalidate
from tasks.params import CandidateParameter, ColorParameter, MonthListParameter, MonthParameter
from tasks.predictions import ModelVersionParameter

# the family of each parameter type (most specific first), for the table of bad values in the tests; a
# parameter of another type has no family, and tests/integration/test_bad_arguments.py names it
PARAMETER_KINDS: tuple[tuple[type, str], ...] = (
    (ColorParameter, "color"),
    (MonthListParameter, "months"),
    (MonthParameter, "month"),
    (ModelVersionParameter, "version"),
    (CandidateParameter, "candidate"),
    (luigi.ChoiceParameter, "choice"),
)
PREFIX = "task_param_"


def invalidatable_tasks() -> dict[str, type[PipelineTask]]:
    """The task families with outputs of their own, by name: PipelineTasks with a ``run()``."""
    found = {}
    for name, cls in Register._get_reg().items():
        if isinstance(cls, type) and issubclass(cls, PipelineTask) and cls.run is not luigi.Task.run:
            found[name] = cls
    return dict(sorted(found.items()))


def parameter_value(param: luigi.Parameter) -> Value:
    """The parameter's own parsing and checks as an argparse type."""
    kind = next((k for cls, k in PARAMETER_KINDS if isinstance(param, cls)), f"luigi:{type(param).__name__}")

    def parse(text: str) -> Any:
        return param.normalize(param.parse(text))

    return Value(kind, parse)


def add_invalidate_parser(sub: argparse._SubParsersAction) -> None:
    invalidate_parser = sub.add_parser(
        "invalidate",
        help="make a task and everything downstream of it run again on the next run",
        description="Give a task a new fingerprint: it and every task downstream of it run again on the next "
        "run, in new output folders; nothing is deleted. 'invalidate TASK_FAMILY --help' lists its parameters.",
    )
    families = invalidate_parser.add_subparsers(dest="task_family", metavar="TASK_FAMILY", title="task families")
    families.required = True
    for family, cls in invalidatable_tasks().items():
        summary = re.split(r"(?<=\.)\s", one_line(cls.__doc__ or family), maxsplit=1)[0]  # its first sentence
        parser = families.add_parser(family, help=summary, description=summary)
        for name, param in cls.get_params():
            required = not param.has_task_value(family, name)
            default = "" if required else f" (default {param.serialize(param.task_value(family, name))})"
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=PREFIX + name,
                metavar=name.upper(),
                type=parameter_value(param),
                required=required,
                default=argparse.SUPPRESS,
                help=f"{param.description or name}{default}",
            )


def invalidate_command(args: argparse.Namespace) -> int:
    """Mark the task; its next run (and its downstream's) happens in new output folders."""
    cls = invalidatable_tasks()[args.task_family]
    given = {key.removeprefix(PREFIX): value for key, value in vars(args).items() if key.startswith(PREFIX)}
    try:
        task = cls(**given)
    except ValueError as exc:  # values that clash together (overlapping months), no production model to pin
        raise UsageError(f"invalidate {args.task_family}: {exc}") from None
    mark = invalidate(task)
    print(f"invalidated {task.task_id} ({mark}): it and every task downstream of it run again on the next run")
    sys.stdout.flush()
    return 0
