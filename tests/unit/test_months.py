"""Month and colour values end up in file names and URLs: they must be validated strictly."""

from __future__ import annotations

import datetime as dt

import pytest

from tripduration.months import (
    add_months,
    check_color,
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


@pytest.mark.parametrize("color", ["green", "yellow"])
def test_check_color_accepts_supported_colors(color):
    assert check_color(color) == color


@pytest.mark.parametrize("color", ["../../etc", "green/../yellow", "Green", "fhv", "", "green "])
def test_check_color_refuses_anything_else(color):
    with pytest.raises(ValueError, match="not supported"):
        check_color(color)


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
