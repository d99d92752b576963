"""Parsing and checking of the month and colour values that name trip files.

These values end up in file names and URLs, so they are validated strictly before anything touches a file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

COLORS: tuple[str, ...] = ("green", "yellow")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(value: str | dt.date) -> dt.date:
    """Return the first day of the month written ``YYYY-MM`` (or of a given date).

    >>> parse_month("2021-03")
    datetime.date(2021, 3, 1)
    """
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, 1)
    match = _MONTH_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"month {value!r} is not of the form YYYY-MM (for example 2021-03)")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"month {value!r} has month number {month}; it must be between 01 and 12")
    if not 2009 <= year <= 2100:
        raise ValueError(f"month {value!r} has year {year}; TLC trip data starts in 2009")
    return dt.date(year, month, 1)


def format_month(month: dt.date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """All months from ``first`` to ``last`` inclusive."""
    first, last = parse_month(first), parse_month(last)
    if last < first:
        raise ValueError(f"month range {format_month(first)}..{format_month(last)} ends before it starts")
    out = [first]
    while out[-1] < last:
        out.append(add_months(out[-1], 1))
    return out


def parse_month_list(value: str | Iterable[str | dt.date]) -> tuple[dt.date, ...]:
    """Parse ``"2021-01,2021-02"``, ``"2021-01..2021-03"`` or an iterable of months into a sorted tuple."""
    if isinstance(value, str):
        parts: list[str | dt.date] = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
    else:
        parts = list(value)
    months: list[dt.date] = []
    for part in parts:
        if isinstance(part, str) and ".." in part:
            first, last = part.split("..", 1)
            months.extend(month_range(parse_month(first.strip(" '\"")), parse_month(last.strip(" '\""))))
        else:
            months.append(parse_month(part.strip(" '\"") if isinstance(part, str) else part))
    if not months:
        raise ValueError(f"month list {value!r} is empty; give at least one month such as 2021-01")
    if len(set(months)) != len(months):
        raise ValueError(f"month list {value!r} repeats a month")
    return tuple(sorted(months))


def check_split(train: Iterable[dt.date], validation: dt.date, test: dt.date | None = None) -> None:
    """Refuse a split whose months overlap: the scores would be optimistic without anyone noticing."""
    train = tuple(train)
    if validation in train:
        raise ValueError(f"validation month {format_month(validation)} is also a training month; pick a later month")
    if test is not None and (test in train or test == validation):
        raise ValueError(f"test month {format_month(test)} is also used for training or validation; pick another month")
