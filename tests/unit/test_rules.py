"""split_trips keeps or rejects every row, with the first reason that applies; no row is lost."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tripduration.data.rules import (
    DISPATCH_REASONS,
    OUTCOME_REASONS,
    REASONS,
    Rules,
    duration_minutes,
    scorable_rejections,
    split_trips,
)

from .reasons import rejection_reasons

MONTH = dt.date(2021, 1, 1)
OK = {
    "pickup_datetime": "2021-01-05 10:00:00",
    "dropoff_datetime": "2021-01-05 10:15:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 2.0,
    "fare_amount": 12.0,
}

#: (reason or None if kept, overrides of the valid row OK)
CASES: list[tuple[str | None, dict]] = [
    (None, {}),
    (None, {"pickup_datetime": "2021-01-01 00:00:00", "dropoff_datetime": "2021-01-01 00:01:00"}),  # bounds
    (None, {"pickup_datetime": "2021-01-31 23:30:00", "dropoff_datetime": "2021-02-01 00:30:00"}),  # 60 min
    (None, {"trip_distance": 0.0}),
    (None, {"trip_distance": 100.0}),
    ("invalid_pickup_datetime", {"pickup_datetime": None}),
    ("invalid_dropoff_datetime", {"dropoff_datetime": None}),
    ("pickup_outside_month", {"pickup_datetime": "2020-12-31 23:50:00", "dropoff_datetime": "2021-01-01 00:10:00"}),
    ("pickup_outside_month", {"pickup_datetime": "2021-02-01 00:00:00", "dropoff_datetime": "2021-02-01 00:10:00"}),
    ("missing_location", {"PULocationID": None}),
    ("missing_location", {"DOLocationID": None}),
    ("unknown_location", {"PULocationID": 999}),
    ("duration_out_of_range", {"dropoff_datetime": "2021-01-05 10:00:30"}),
    ("duration_out_of_range", {"dropoff_datetime": "2021-01-05 11:00:01"}),
    ("duration_out_of_range", {"dropoff_datetime": "2021-01-05 09:50:00"}),  # negative
    ("invalid_distance", {"trip_distance": None}),
    ("negative_distance", {"trip_distance": -0.5}),
    ("negative_distance", {"trip_distance": -np.inf}),
    ("absurd_distance", {"trip_distance": 100.01}),
    ("absurd_distance", {"trip_distance": np.inf}),
    # the first rule that applies wins
    ("invalid_pickup_datetime", {"pickup_datetime": None, "PULocationID": None, "trip_distance": -1.0}),
    ("pickup_outside_month", {"pickup_datetime": "2021-03-01 10:00:00", "trip_distance": None}),
    ("missing_location", {"DOLocationID": None, "dropoff_datetime": "2021-01-05 23:00:00"}),
    # dispatch-time rules come before outcome rules (issue 11.3): a bad distance wins over a bad duration
    ("negative_distance", {"trip_distance": -1.0, "dropoff_datetime": "2021-01-05 09:50:00"}),
    ("absurd_distance", {"trip_distance": 500.0, "dropoff_datetime": None}),
]

VALID_IDS = set(range(1, 266))


@pytest.fixture
def trips(make_trips) -> pd.DataFrame:
    return make_trips([{**OK, **overrides} for _, overrides in CASES])


def test_every_reason_is_covered_by_the_cases():
    # invalid_value / invalid_outcome_value come from the reader's masks, not from a value: see
    # test_unreadable_values_are_rejected... and test_an_unreadable_value_is_a_dispatch_or_an_outcome_rejection...
    assert {reason for reason, _ in CASES if reason} | {"invalid_value", "invalid_outcome_value"} == set(REASONS)


def test_unreadable_values_are_rejected_after_the_other_dispatch_rules(trips):
    unreadable = np.zeros(len(trips), dtype=bool)
    unreadable[0] = True  # a valid row whose optional value could not be read
    unreadable[5] = True  # a row that another rule rejects first
    reasons = rejection_reasons(trips, MONTH, Rules(), VALID_IDS, unreadable)
    assert reasons.iloc[0] == "invalid_value"
    assert reasons.iloc[5] == CASES[5][0]
    kept, rejected, summary = split_trips(trips, MONTH, Rules(), VALID_IDS, unreadable)
    assert summary["rejected_by_reason"]["invalid_value"] == 1
    assert summary["rows_in"] == len(kept) + len(rejected)


def test_unreadable_value_wins_over_an_outcome_rule(make_trips):
    # the reader's mask does not say which column was unreadable: the row may miss a model input, so it is
    # not scorable, whatever its dropoff
    trips = make_trips([{**OK, "dropoff_datetime": None}, {**OK, "dropoff_datetime": "2021-01-05 09:50:00"}])
    reasons = rejection_reasons(trips, MONTH, Rules(), VALID_IDS, np.array([True, False]))
    assert reasons.tolist() == ["invalid_value", "duration_out_of_range"]


def test_dispatch_reasons_are_all_tested_before_outcome_reasons():
    assert (*DISPATCH_REASONS, *OUTCOME_REASONS) == REASONS
    assert set(OUTCOME_REASONS) == {"invalid_dropoff_datetime", "duration_out_of_range", "invalid_outcome_value"}
    assert {"invalid_pickup_datetime", "pickup_outside_month", "missing_location", "absurd_distance"} <= set(
        DISPATCH_REASONS
    )


def test_rows_rejected_only_for_their_outcome_are_scorable(trips):
    _, rejected, _ = split_trips(trips, MONTH, Rules(), VALID_IDS)
    scorable = scorable_rejections(rejected["reason"])
    outcome_only = [reason in OUTCOME_REASONS for reason, _ in CASES if reason]
    assert scorable.tolist() == outcome_only
    assert sum(outcome_only) == 4  # a missing dropoff and three durations out of range: known at dispatch
    # every scorable row has what a dispatch-time model needs
    rows = rejected[scorable]
    assert rows["pickup_datetime"].notna().all() and rows["trip_distance"].between(0, 100).all()
    assert rows["PULocationID"].notna().all() and rows["DOLocationID"].notna().all()


def test_each_row_gets_its_reason(trips):
    reasons = rejection_reasons(trips, MONTH, Rules(), VALID_IDS)
    assert reasons.tolist() == [reason for reason, _ in CASES]


def test_split_trips_accounts_for_every_row(trips):
    kept, rejected, summary = split_trips(trips, MONTH, Rules(), VALID_IDS)
    expected_rejected = [reason for reason, _ in CASES if reason]

    assert summary["rows_in"] == len(trips) == len(CASES)
    assert summary["rows_kept"] == len(kept) == sum(reason is None for reason, _ in CASES)
    assert summary["rows_rejected"] == len(rejected) == len(expected_rejected)
    assert summary["rows_in"] == summary["rows_kept"] + summary["rows_rejected"]
    assert summary["month"] == "2021-01"
    assert summary["rejected_by_reason"] == {r: expected_rejected.count(r) for r in REASONS}
    assert summary["rules"] == {"min_duration_min": 1.0, "max_duration_min": 60.0, "max_distance_miles": 100.0}

    assert "reason" in rejected.columns and "reason" not in kept.columns
    assert rejected["reason"].tolist() == expected_rejected
    assert list(rejected.columns) == [*trips.columns, "reason"]
    # rejected rows are kept as they were, so they can be inspected
    assert rejected["fare_amount"].tolist() == [12.0] * len(rejected)
    assert kept.index.equals(pd.RangeIndex(len(kept)))
    assert rejected.index.equals(pd.RangeIndex(len(rejected)))


def test_kept_location_ids_are_non_null_int32(trips):
    kept, _, _ = split_trips(trips, MONTH, Rules(), VALID_IDS)
    assert kept["PULocationID"].dtype == np.dtype("int32")
    assert kept["DOLocationID"].dtype == np.dtype("int32")
    assert kept["trip_distance"].tolist() == [2.0, 2.0, 2.0, 0.0, 100.0]
    assert kept["pickup_datetime"].dtype == trips["pickup_datetime"].dtype


def test_without_valid_location_ids_unknown_zones_are_kept(trips):
    reasons = rejection_reasons(trips, MONTH, Rules())
    expected = [None if reason == "unknown_location" else reason for reason, _ in CASES]
    assert reasons.tolist() == expected


def test_valid_location_ids_filter_checks_both_ends(make_trips):
    trips = make_trips([OK, {**OK, "PULocationID": 5}, {**OK, "DOLocationID": 5}, {**OK, "PULocationID": 75}])
    kept, rejected, summary = split_trips(trips, MONTH, Rules(), valid_location_ids=[74, 75])
    assert rejected["reason"].tolist() == ["unknown_location", "unknown_location"]
    assert kept["PULocationID"].tolist() == [74, 75]
    assert summary["rejected_by_reason"]["unknown_location"] == 2
    # any collection works, for example a frozenset of numpy integers
    reasons = rejection_reasons(trips, MONTH, Rules(), frozenset(np.array([74, 75, 5])))
    assert reasons.isna().all()


def test_rule_thresholds_come_from_rules(make_trips):
    trips = make_trips(
        [
            {**OK, "dropoff_datetime": "2021-01-05 10:04:00"},  # 4 minutes
            {**OK, "dropoff_datetime": "2021-01-05 11:30:00"},  # 90 minutes
            {**OK, "trip_distance": 30.0},
        ]
    )
    strict = Rules(min_duration_min=5.0, max_duration_min=120.0, max_distance_miles=25.0)
    assert rejection_reasons(trips, MONTH, strict).tolist() == [
        "duration_out_of_range",
        None,
        "absurd_distance",
    ]
    assert rejection_reasons(trips, MONTH, Rules()).tolist() == [None, "duration_out_of_range", None]


def test_month_window_follows_the_month_argument(make_trips):
    trips = make_trips([{**OK, "pickup_datetime": "2021-12-31 23:00:00", "dropoff_datetime": "2021-12-31 23:30:00"}])
    assert rejection_reasons(trips, dt.date(2021, 12, 1), Rules()).tolist() == [None]
    assert rejection_reasons(trips, dt.date(2022, 1, 1), Rules()).tolist() == ["pickup_outside_month"]


def test_all_rejected_and_empty_frames(make_trips):
    trips = make_trips([{**OK, "trip_distance": None}, {**OK, "PULocationID": None}])
    kept, rejected, summary = split_trips(trips, MONTH, Rules())
    assert len(kept) == 0 and len(rejected) == 2
    assert kept["PULocationID"].dtype == np.dtype("int32")

    empty = trips.iloc[:0]
    kept, rejected, summary = split_trips(empty, MONTH, Rules())
    assert (summary["rows_in"], summary["rows_kept"], summary["rows_rejected"]) == (0, 0, 0)
    assert "reason" in rejected.columns


def test_non_default_index_is_handled(make_trips):
    trips = make_trips([OK, {**OK, "trip_distance": -1.0}, OK])
    trips.index = [10, 3, 7]
    kept, rejected, summary = split_trips(trips, MONTH, Rules())
    assert len(kept) == 2
    assert rejected["reason"].tolist() == ["negative_distance"]
    assert summary["rows_in"] == summary["rows_kept"] + summary["rows_rejected"] == 3


def test_duration_minutes_is_float_and_nan_for_missing_timestamps(make_trips):
    trips = make_trips([OK, {**OK, "dropoff_datetime": None}, {**OK, "dropoff_datetime": "2021-01-05 10:00:30"}])
    minutes = duration_minutes(trips["pickup_datetime"], trips["dropoff_datetime"])
    assert minutes.dtype == np.dtype("float64")
    assert minutes[0] == 15.0 and np.isnan(minutes[1]) and minutes[2] == 0.5


def test_an_unreadable_value_is_a_dispatch_or_an_outcome_rejection_by_its_column(write_parquet):
    """A garbage dropoff is invalid_dropoff_datetime, a garbage fare invalid_outcome_value (both scorable at
    dispatch); a garbage passenger count is invalid_value (a model input: not scorable)."""
    from tripduration.data.validation import validate_trip_file

    base = {
        "lpep_pickup_datetime": ["2021-01-05T10:00:00"] * 4,
        "lpep_dropoff_datetime": ["2021-01-05T10:15:00", "soon", "2021-01-05T10:15:00", "2021-01-05T10:15:00"],
        "PULocationID": [74, 74, 74, 74],
        "DOLocationID": [75, 75, 75, 75],
        "trip_distance": [2.0, 2.0, 2.0, 2.0],
        "fare_amount": ["12.0", "12.0", "twelve", "12.0"],
        "passenger_count": ["1", "1", "1", "many"],
    }
    path = write_parquet(base)
    kept, rejected, summary = validate_trip_file(path, MONTH, Rules())
    assert len(kept) == 1
    assert rejected["reason"].tolist() == ["invalid_dropoff_datetime", "invalid_outcome_value", "invalid_value"]
    assert scorable_rejections(rejected["reason"]).tolist() == [True, True, False]
    assert summary["rows_in"] == summary["rows_kept"] + summary["rows_rejected"] == 4
