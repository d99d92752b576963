"""The types of the command line's values: each refuses a bad value with one line saying what to give.

Every option and positional of every command has one of these types (or a fixed set of ``choices``): a
value is checked while the arguments are parsed, before anything is read or written, and argparse prefixes
the argument's name, e.g. ``argument --month: month '2021-13' has month number 13; it must be between 01
and 12``. ``Value.kind`` names the family of values, so a test can feed every argument the bad values of
its family (tests/integration/test_bad_arguments.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tripduration.data.months import parse_month, parse_month_list
from tripduration.registry.mlflow.mapping import tracking_uri_problem
from tripduration.registry.names import check_version

LAST = "last"
MAX_TEXT = 500
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True)
class Value:
    """An argparse ``type``: ``parse`` turns the text into the value or raises ValueError with the reason."""

    kind: str
    parse: Callable[[str], Any]

    def __call__(self, text: str) -> Any:
        try:
            return self.parse(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(one_line(str(exc))) from None


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(text.split())


def _month_or_last(text: str) -> dt.date | str:
    """A month, or ``last``: resolved against today's date when the tasks are made."""
    return LAST if text == LAST else parse_month(text)


def _version(text: str) -> str:
    return check_version(text, "version").removeprefix("version: ")


def int_in_range(low: int, high: int, what: str) -> Value:
    """An integer from ``low`` to ``high``; the error names the value, the range and what it counts."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer: give an integer from {low} to {high} ({what})") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range: give an integer from {low} to {high} ({what})")
        return number

    return Value("integer", parse)


def number_in_range(low: float, high: float, what: str) -> Value:
    """A finite number from ``low`` to ``high`` (NaN and infinities are refused: they are not settings)."""

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number: give a number from {low:g} to {high:g} ({what})") from None
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(f"{text} is out of range: give a number from {low:g} to {high:g} ({what})")
        return number

    return Value("number", parse)


def _host(text: str) -> str:
    """An IP address or a host name (RFC 1123); a dotted quad must be a real IPv4 address."""
    if re.fullmatch(r"[\d.]+", text) or ":" in text:
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address: give e.g. 127.0.0.1, ::1 or a host name") from None
    if not _HOSTNAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a host name: give letters, digits, '-' and '.' (e.g. localhost, 127.0.0.1)")
    return text


def _text(text: str) -> str:
    """Free text on one line, not blank, at most MAX_TEXT characters (it is recorded in JSON files)."""
    if not text.strip():
        raise ValueError("is empty: give a short text")
    if any(ch in text for ch in "\r\n") or not text.isprintable():
        raise ValueError(f"{text[:40]!r} holds a line break or a control character: give one line of text")
    if len(text) > MAX_TEXT:
        raise ValueError(f"is {len(text)} characters long: give at most {MAX_TEXT}")
    return text


def _tracking_uri(text: str) -> str:
    """An MLflow tracking URI (the check ``[mlflow] tracking_uri`` has too)."""
    problem = tracking_uri_problem(text)
    if problem:
        raise ValueError(problem)
    _text(text)
    return text


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date or date-time such as 2026-12-06T08:00") from None
    if not 2009 <= moment.year <= 2100:
        raise ValueError(f"{text!r}: year {moment.year} is outside 2009..2100 (TLC trip data starts in 2009)")
    return moment if moment.tzinfo else moment.astimezone()


MONTH = Value("month", parse_month)
MOMENT = Value("moment", _moment)
MONTH_OR_LAST = Value("month-or-last", _month_or_last)
MONTHS = Value("months", parse_month_list)
VERSION = Value("version", _version)
HOST = Value("host", _host)
TEXT = Value("text", _text)
TRACKING_URI = Value("tracking-uri", _tracking_uri)
