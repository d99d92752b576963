"""luigi's own command line (``python -m luigi --module pipeline ...``) with exact option names.

luigi builds its parser with argparse's default ``allow_abbrev=True`` and adds every config key as a global
flag (``--monthly-max-lateness-days``). A task parameter such as ``--month`` is then also a prefix of every
``--monthly-*`` flag: with one such key argparse silently took ``--month`` for it in its first pass, with two
it stops with "ambiguous option". Exact names only: a flag means what it spells, whatever keys exist.
"""

from __future__ import annotations

import argparse
from typing import Any

from luigi.cmdline_parser import CmdlineParser

_ORIGINAL = CmdlineParser._build_parser


def _exact_parser(root_task: Any = None, help_all: bool = False) -> argparse.ArgumentParser:
    parser = _ORIGINAL(root_task=root_task, help_all=help_all)
    parser.allow_abbrev = False
    return parser


def use_exact_flags() -> None:
    """Make luigi's command-line parser refuse abbreviations (idempotent)."""
    CmdlineParser._build_parser = staticmethod(_exact_parser)  # type: ignore[method-assign]
