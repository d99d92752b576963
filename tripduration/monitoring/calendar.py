"""The monthly loop's calendar: which months are due, which have arrived, which are late.

TLC publishes a month some weeks after it ends, at no fixed day. The daily line (``pipeline.py daily``) asks,
for every month from the first monitored one to the last one that has ended: is it done (monitored, no retrain
pending)? has its file appeared? how late is it? This module answers from facts the caller gathered (no I/O):

- ``done``: its MonthlyRun record exists and no deferred retrain waits on it;
- ``ready``: not done and its file is here or downloadable now: the loop runs it;
- ``resume``: done, but its retrain was deferred for months that have arrived since: the loop resumes it;
- ``deferred``: done, its retrain is deferred and some of the months it waits for are still missing;
- ``awaited``: not published yet, within ``max_lateness_days`` of the month's end: not a failure;
- ``overdue``: still not published ``max_lateness_days`` after the month's end: the loop exits 20 naming it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from tripduration.data.months import add_months, format_month, month_range, parse_month

STATES = ("done", "ready", "resume", "deferred", "awaited", "overdue")


def month_end(month: dt.date) -> dt.date:
    """The first day after ``month`` (the day its data can start to be published)."""
    return add_months(parse_month(month), 1)


def lateness_days(month: dt.date, today: dt.date) -> int:
    """Days since ``month`` ended (0 on the first day of the next month)."""
    return (today - month_end(month)).days


def ended_months(first: dt.date, today: dt.date) -> list[dt.date]:
    """Every month from ``first`` to the last one that has ended before ``today`` (empty if none has)."""
    last = add_months(parse_month(today), -1)
    first = parse_month(first)
    return month_range(first, last) if first <= last else []


@dataclass(frozen=True)
class MonthState:
    month: dt.date
    state: str
    lateness_days: int
    waiting_for: tuple[str, ...] = ()  # months a deferred retrain waits for

    @property
    def label(self) -> str:
        return format_month(self.month)

    def line(self, checked: dt.datetime) -> str:
        """The one line the daily run prints for a month that did not run."""
        at = checked.strftime("%Y-%m-%d %H:%M")
        if self.state == "awaited":
            return f"{self.label}: not published yet, checked {at} ({self.lateness_days} days after the month ended)"
        if self.state == "overdue":
            return (
                f"{self.label}: still not published {self.lateness_days} days after the month ended, checked {at} "
                "(more than [monthly] max_lateness_days): check the source"
            )
        if self.state == "deferred":
            return f"{self.label}: retrain deferred, waiting for {', '.join(self.waiting_for)} (checked {at})"
        return f"{self.label}: {self.state}"


def classify(
    months: Iterable[dt.date],
    today: dt.date,
    records: Mapping[dt.date, Mapping[str, object]],
    local: Collection[dt.date],
    published: Collection[dt.date],
    max_lateness_days: int,
) -> list[MonthState]:
    """The state of each month (see the module docstring).

    ``records``: the MonthlyRun record of each month done; ``local``: months whose file is here; ``published``:
    months whose file the source says it can send now.
    """
    here = {format_month(m) for m in local}
    states = []
    for month in months:
        late = lateness_days(month, today)
        record = records.get(month)
        if record is not None:
            deferred_for = record.get("missing_months") if record.get("retrain_deferred") else None
            waiting = tuple(str(m) for m in deferred_for) if isinstance(deferred_for, list | tuple) else ()
            missing = tuple(m for m in waiting if m not in here)
            state = "done" if not waiting else ("deferred" if missing else "resume")
            states.append(MonthState(month, state, late, missing))
        elif month in local or month in published:
            states.append(MonthState(month, "ready", late))
        else:
            states.append(MonthState(month, "overdue" if late > max_lateness_days else "awaited", late))
    return states
