"""Parameter types of the tasks: a taxi colour, a month, a list or range of months, a model candidate."""

from __future__ import annotations

import datetime as dt
from typing import Any

import luigi

from tripduration.data.months import COLORS, format_month, parse_month, parse_month_list
from tripduration.training.candidates import get_candidate


class ColorParameter(luigi.ChoiceParameter[str]):
    """Taxi colour; only known colours are accepted, so the value is safe in paths and URLs."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("choices", COLORS)
        kwargs.setdefault("var_type", str)
        kwargs.setdefault("default", "green")
        kwargs.setdefault("description", f"taxi colour, one of {', '.join(COLORS)}")
        super().__init__(**kwargs)


class CandidateParameter(luigi.Parameter):
    """The name of a model candidate of ``tripduration.training.candidates.CANDIDATES``; an unknown name is
    refused when the task is made (command line, keyword argument or config), naming the known ones."""

    def normalize(self, x: Any) -> str:
        get_candidate(x)
        return str(x)


class MonthParameter(luigi.MonthParameter):
    """A month ``YYYY-MM`` whose parse errors say what is wrong (``2021-13``: month number 13...)."""

    def parse(self, s: str) -> dt.date:
        return parse_month(s)


class MonthListParameter(luigi.Parameter[tuple[dt.date, ...]]):
    """Months as ``2021-01,2021-02`` or a range ``2021-01..2021-03``; a sorted tuple of dates."""

    def parse(self, x: str) -> tuple[dt.date, ...]:
        return parse_month_list(x)

    def normalize(self, x: Any) -> tuple[dt.date, ...]:
        return parse_month_list(x) if not isinstance(x, tuple) or not all(isinstance(m, dt.date) for m in x) else x

    def serialize(self, x: Any) -> str:
        return ",".join(format_month(m) for m in parse_month_list(x))
