"""Month and colour values end up in file names and URLs: they must be validated strictly."""

from __future__ import annotations

import datetime as dt

import pytest

from tripduration.data.months import (
    add_months,
    check_split,
    format_month,
    month_range,
    parse_month,
    parse_month_list,
)

JAN, FEB, MAR, APR = (dt.date(2021, m, 1) for m in (1, 2, 3, 4))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-03", dt.date(2021, 3, 1)),
        (" 2021-12 ", dt.date(2021, 12, 1)),
        ("2009-01", dt.date(2009, 1, 1)),
        ("2100-12", dt.date(2100, 12, 1)),
        (dt.date(2021, 3, 17), dt.date(2021, 3, 1)),
        (dt.datetime(2021, 3, 17, 12, 30), dt.date(2021, 3, 1)),
    ],
)
def test_parse_month_accepts_valid_months(value, expected):
    result = parse_month(value)
    assert result == expected
    assert type(result) is dt.date


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2021-13", "between 01 and 12"),
        ("2021-00", "between 01 and 12"),
        ("2021-1", "YYYY-MM"),
        ("21-01", "YYYY-MM"),
        ("2021/01", "YYYY-MM"),
        ("2021-01-01", "YYYY-MM"),
        ("../../etc", "YYYY-MM"),
        ("2021-01/../../etc", "YYYY-MM"),
        ("", "YYYY-MM"),
        ("1999-05", "year 1999"),
        ("2101-01", "year 2101"),
    ],
)
def test_parse_month_refuses_invalid_values(value, message):
    with pytest.raises(ValueError, match=message):
        parse_month(value)


def test_format_and_add_months_wrap_around_years():
    assert format_month(dt.date(2021, 3, 1)) == "2021-03"
    assert add_months(dt.date(2021, 12, 1), 1) == dt.date(2022, 1, 1)
    assert add_months(dt.date(2021, 1, 1), -1) == dt.date(2020, 12, 1)
    assert add_months(dt.date(2021, 1, 1), 25) == dt.date(2023, 2, 1)


def test_month_range_is_inclusive_and_refuses_reversed_bounds():
    assert month_range(dt.date(2020, 11, 1), dt.date(2021, 2, 1)) == [
        dt.date(2020, 11, 1),
        dt.date(2020, 12, 1),
        JAN,
        FEB,
    ]
    assert month_range(JAN, JAN) == [JAN]
    with pytest.raises(ValueError, match="ends before it starts"):
        month_range(MAR, JAN)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-01", (JAN,)),
        ("2021-03,2021-01", (JAN, MAR)),
        (" 2021-01 , 2021-02 ", (JAN, FEB)),
        ("[2021-01, 2021-02]", (JAN, FEB)),
        ("'2021-01','2021-02'", (JAN, FEB)),
        ("2021-01..2021-03", (JAN, FEB, MAR)),
        ("2021-01 .. 2021-03", (JAN, FEB, MAR)),
        ("2021-01..2021-02,2021-04", (JAN, FEB, APR)),
        ("2020-12..2021-01", (dt.date(2020, 12, 1), JAN)),
        (["2021-02", "2021-01"], (JAN, FEB)),
        ([FEB, "2021-01..2021-01"], (JAN, FEB)),
        ((dt.date(2021, 2, 14),), (FEB,)),
    ],
)
def test_parse_month_list_accepts_lists_and_ranges(value, expected):
    assert parse_month_list(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2021-01,2021-01", "repeats a month"),
        ("2021-01..2021-03,2021-02", "repeats a month"),
        ([JAN, "2021-01"], "repeats a month"),
        ("", "is empty"),
        (" , ", "is empty"),
        ("[]", "is empty"),
        ([], "is empty"),
        ("2021-03..2021-01", "ends before it starts"),
        ("2021-01,../../etc", "YYYY-MM"),
        ("2021-01..2021-13", "between 01 and 12"),
    ],
)
def test_parse_month_list_refuses_bad_lists(value, message):
    with pytest.raises(ValueError, match=message):
        parse_month_list(value)


def test_check_split_accepts_disjoint_months():
    check_split([JAN, FEB], MAR, APR)
    check_split(iter([JAN]), FEB)  # any iterable, test month optional


@pytest.mark.parametrize(
    ("train", "validation", "test", "message"),
    [
        ([JAN, FEB], FEB, MAR, "validation month 2021-02 is also a training month"),
        ([JAN, FEB], MAR, JAN, "test month 2021-01 is also used"),
        ([JAN, FEB], MAR, MAR, "test month 2021-03 is also used"),
        (iter([JAN, FEB]), MAR, FEB, "test month 2021-02 is also used"),
    ],
)
def test_check_split_refuses_overlaps(train, validation, test, message):
    with pytest.raises(ValueError, match=message):
        check_split(train, validation, test)


# --------------------------------------------------------------------------- months relative to today (cron)
# issue 15.5: `date -d 'last month'` gives the current month on the 31st and on 29-31 March; the program
# computes "the months that ended before today" from the month number instead.
CALENDAR_EDGES = [
    (dt.date(2024, 1, 31), "2023-12"),
    (dt.date(2023, 3, 29), "2023-02"),
    (dt.date(2023, 3, 30), "2023-02"),
    (dt.date(2023, 3, 31), "2023-02"),
    (dt.date(2024, 3, 29), "2024-02"),
    (dt.date(2024, 3, 31), "2024-02"),
    (dt.date(2023, 5, 31), "2023-04"),
    (dt.date(2023, 12, 31), "2023-11"),
    (dt.date(2024, 2, 28), "2024-01"),
    (dt.date(2024, 2, 29), "2024-01"),
    (dt.date(2023, 3, 1), "2023-02"),
    (dt.date(2024, 1, 1), "2023-12"),
    (dt.date(2024, 12, 1), "2024-11"),
]


def cli_tasks(*argv: str, today: dt.date) -> list:
    import pipeline

    return pipeline.tasks_for(pipeline.build_parser().parse_args(list(argv)), today=today)


@pytest.mark.parametrize(("today", "previous"), CALENDAR_EDGES, ids=[str(d) for d, _ in CALENDAR_EDGES])
def test_last_months_at_calendar_edges(today, previous):
    from pipeline import last_months

    prev = parse_month(previous)
    assert last_months(1, today) == (prev, prev)
    assert last_months(3, today) == (add_months(prev, -2), prev)


@pytest.mark.parametrize("year", [2023, 2024])  # 2024 is a leap year
def test_last_months_never_includes_the_current_month_on_any_day_of_the_year(year):
    from pipeline import last_months

    day = dt.date(year, 1, 1)
    while day.year == year:
        start, stop = last_months(2, day)
        assert stop == add_months(parse_month(day), -1), day
        assert start == add_months(stop, -1), day
        day += dt.timedelta(days=1)


@pytest.mark.parametrize(("today", "previous"), CALENDAR_EDGES, ids=[str(d) for d, _ in CALENDAR_EDGES])
def test_month_last_of_the_monthly_commands_at_calendar_edges(today, previous, monkeypatch):
    # MonthlyRun pins the production version when it is made: give it one without a registry
    monkeypatch.setattr("tasks.predictions.production_version", lambda color: "v0001")
    (monthly,) = cli_tasks("monthly", "--month", "last", today=today)
    (monthly_default,) = cli_tasks("monthly", today=today)
    (run,) = cli_tasks("monthly-run", "--month", "last", today=today)
    assert format_month(monthly.month) == format_month(monthly_default.month) == previous
    assert format_month(run.month) == previous


@pytest.mark.parametrize(("today", "previous"), CALENDAR_EDGES, ids=[str(d) for d, _ in CALENDAR_EDGES])
def test_backfill_last_n_spans_the_months_that_ended_before_today(today, previous):
    (backfill,) = cli_tasks("backfill", "--last", "3", today=today)
    prev = parse_month(previous)
    assert backfill.start == add_months(prev, -2)
    assert backfill.stop == add_months(prev, 1)  # RangeMonthly's stop is exclusive
    # RangeMonthly looks back from its own "now": pinned to the same today, so the span is inside its window
    window_start = add_months(
        parse_month(dt.datetime.fromtimestamp(backfill.now, dt.UTC).date()), -backfill.months_back
    )
    assert window_start <= backfill.start
    assert dt.datetime.fromtimestamp(backfill.now, dt.UTC).date() == today


def test_backfill_range_monthly_schedules_exactly_the_months_of_last_n(pipeline_env):
    (backfill,) = cli_tasks("backfill", "--last", "3", today=dt.date(2023, 3, 31))
    months = sorted(format_month(t.month) for t in backfill.requires())
    assert months == ["2022-12", "2023-01", "2023-02"]


def test_backfill_start_stop_still_works_and_is_checked():
    (backfill,) = cli_tasks("backfill", "--start", "2021-03", "--stop", "2021-06", today=dt.date(2023, 3, 31))
    assert (backfill.start, backfill.stop) == (MAR, dt.date(2021, 7, 1))
    with pytest.raises(ValueError, match="after --stop"):
        cli_tasks("backfill", "--start", "2021-06", "--stop", "2021-03", today=dt.date(2023, 3, 31))
    with pytest.raises(ValueError, match="needs --stop"):
        cli_tasks("backfill", "--start", "2021-06", today=dt.date(2023, 3, 31))
    with pytest.raises(ValueError, match="leave out --stop"):
        cli_tasks("backfill", "--last", "2", "--stop", "2021-03", today=dt.date(2023, 3, 31))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["backfill", "--last", "0"], "argument --last: 0 is out of range: give an integer from 1 to 120"),
        (["backfill", "--last", "-2"], "argument --last: -2 is out of range"),
        (["backfill", "--last", "3", "--start", "2021-01"], "not allowed with argument"),
        (["backfill"], "one of the arguments --last --start is required"),
    ],
)
def test_backfill_span_arguments_are_refused_with_exit_2(argv, needle, capsys):
    import pipeline

    with pytest.raises(SystemExit) as info:
        pipeline.build_parser().parse_args(argv)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err
