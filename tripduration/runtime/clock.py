"""The time the pipeline takes as now: the real clock, or the one a replay or a test sets.

``pipeline.py daily --now 2021-08-25T08:00`` replays the loop as of that moment; it sets ``TRIPDURATION_NOW``,
which forked task processes inherit, so the records and events a run writes carry the same clock as the
calendar it decided on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator

VARIABLE = "TRIPDURATION_NOW"


def now() -> dt.datetime:
    """The current time (UTC-aware), or the one ``TRIPDURATION_NOW`` holds."""
    given = os.environ.get(VARIABLE)
    if given:
        moment = dt.datetime.fromisoformat(given)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


def stamp(timespec: str = "seconds") -> str:
    """:func:`now` as the ISO text records carry (UTC; seconds unless ``timespec`` says otherwise)."""
    return now().astimezone(dt.UTC).isoformat(timespec=timespec)


@contextlib.contextmanager
def pinned(moment: dt.datetime | None) -> Iterator[None]:
    """Take ``moment`` as now in this process and the processes it starts, for the block (None: no change)."""
    before = os.environ.get(VARIABLE)
    if moment is not None:
        os.environ[VARIABLE] = moment.isoformat()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = before
