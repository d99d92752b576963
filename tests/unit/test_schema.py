"""read_trips maps every TLC file variant onto the canonical schema, or fails naming the file and column."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tripduration.errors import TripDataError
from tripduration.schema import CANONICAL_DTYPES, REQUIRED_COLUMNS, read_trips

PICKUPS = [dt.datetime(2021, 1, 1, 10, 0), dt.datetime(2021, 1, 2, 23, 59, 30), dt.datetime(2021, 1, 31, 8, 15)]
DROPOFFS = [dt.datetime(2021, 1, 1, 10, 20), dt.datetime(2021, 1, 3, 0, 10), dt.datetime(2021, 1, 31, 8, 45)]


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(CANONICAL_DTYPES)
    assert {c: str(t) for c, t in frame.dtypes.items()} == CANONICAL_DTYPES


def ints(frame: pd.DataFrame, column: str) -> list[int | None]:
    return [None if v is pd.NA else int(v) for v in frame[column]]


def times(frame: pd.DataFrame, column: str) -> list[dt.datetime | None]:
    return [None if pd.isna(v) else v.to_pydatetime() for v in frame[column]]


def green_2021_table() -> pa.Table:
    """The schema of the embedded green 2021 files: int64 IDs, double codes and counts, null-typed ehail_fee."""
    schema = pa.schema(
        [
            ("VendorID", pa.int64()),
            ("lpep_pickup_datetime", pa.timestamp("us")),
            ("lpep_dropoff_datetime", pa.timestamp("us")),
            ("store_and_fwd_flag", pa.string()),
            ("RatecodeID", pa.float64()),
            ("PULocationID", pa.int64()),
            ("DOLocationID", pa.int64()),
            ("passenger_count", pa.float64()),
            ("trip_distance", pa.float64()),
            ("fare_amount", pa.float64()),
            ("extra", pa.float64()),
            ("mta_tax", pa.float64()),
            ("tip_amount", pa.float64()),
            ("tolls_amount", pa.float64()),
            ("ehail_fee", pa.null()),
            ("improvement_surcharge", pa.float64()),
            ("total_amount", pa.float64()),
            ("payment_type", pa.float64()),
            ("trip_type", pa.float64()),
            ("congestion_surcharge", pa.float64()),
        ]
    )
    data = {
        "VendorID": [2, 1, None],
        "lpep_pickup_datetime": PICKUPS,
        "lpep_dropoff_datetime": DROPOFFS,
        "store_and_fwd_flag": ["N", "Y", None],
        "RatecodeID": [1.0, 5.0, None],
        "PULocationID": [74, 41, 264],
        "DOLocationID": [75, 42, 1],
        "passenger_count": [1.0, 2.0, None],
        "trip_distance": [1.5, 3.25, 0.0],
        "fare_amount": [8.5, 14.0, 20.0],
        "extra": [0.5, 0.5, 0.0],
        "mta_tax": [0.5, 0.5, 0.0],
        "tip_amount": [1.0, 0.0, 0.0],
        "tolls_amount": [0.0, 0.0, 0.0],
        "ehail_fee": [None, None, None],
        "improvement_surcharge": [0.3, 0.3, 0.3],
        "total_amount": [10.8, 15.3, 20.3],
        "payment_type": [1.0, 2.0, None],
        "trip_type": [1.0, 1.0, None],
        "congestion_surcharge": [0.0, 0.0, None],
    }
    return pa.table(data, schema=schema)


def minimal_table(**overrides: pa.Array) -> pa.Table:
    """Only the required columns (green names), with some columns replaced."""
    columns = {
        "lpep_pickup_datetime": pa.array(PICKUPS, pa.timestamp("us")),
        "lpep_dropoff_datetime": pa.array(DROPOFFS, pa.timestamp("us")),
        "PULocationID": pa.array([74, 41, 264], pa.int64()),
        "DOLocationID": pa.array([75, 42, 1], pa.int64()),
        "trip_distance": pa.array([1.5, 3.25, 0.0], pa.float64()),
        "fare_amount": pa.array([8.5, 14.0, 20.0], pa.float64()),
        "tip_amount": pa.array([1.0, 0.0, 0.0], pa.float64()),
        "total_amount": pa.array([10.8, 15.3, 20.3], pa.float64()),
    }
    columns.update(overrides)
    return pa.table(columns)


# ----------------------------------------------------------------------------------------- file variants
def test_green_2021_variant(write_parquet):
    path = write_parquet(green_2021_table(), "green_tripdata_2021-01.parquet")
    frame, report = read_trips(path)

    assert_canonical(frame)
    assert len(frame) == report.rows == 3
    assert times(frame, "pickup_datetime") == PICKUPS
    assert times(frame, "dropoff_datetime") == DROPOFFS
    assert ints(frame, "VendorID") == [2, 1, None]
    assert ints(frame, "RatecodeID") == [1, 5, None]
    assert ints(frame, "PULocationID") == [74, 41, 264]
    assert ints(frame, "DOLocationID") == [75, 42, 1]
    assert ints(frame, "passenger_count") == [1, 2, None]
    assert ints(frame, "payment_type") == [1, 2, None]
    assert ints(frame, "trip_type") == [1, 1, None]
    assert frame["trip_distance"].tolist() == [1.5, 3.25, 0.0]
    assert frame["total_amount"].tolist() == [10.8, 15.3, 20.3]

    assert report.source_columns["pickup_datetime"] == "lpep_pickup_datetime"
    assert report.source_types["RatecodeID"] == "double"
    assert report.coerced_to_null == {}  # nulls in the file are not coercions
    assert {"ehail_fee", "store_and_fwd_flag", "extra", "congestion_surcharge"} <= set(report.ignored_columns)
    assert report.as_dict()["rows"] == 3


def test_later_year_variant_with_int32_ids_nullable_counts_and_extra_columns(write_parquet):
    schema = pa.schema(
        [
            ("VendorID", pa.int32()),
            ("lpep_pickup_datetime", pa.timestamp("us")),
            ("lpep_dropoff_datetime", pa.timestamp("us")),
            ("store_and_fwd_flag", pa.large_string()),
            ("RatecodeID", pa.int64()),
            ("PULocationID", pa.int32()),
            ("DOLocationID", pa.int32()),
            ("passenger_count", pa.int64()),
            ("trip_distance", pa.float64()),
            ("fare_amount", pa.float64()),
            ("tip_amount", pa.float64()),
            ("ehail_fee", pa.float64()),
            ("total_amount", pa.float64()),
            ("payment_type", pa.int64()),
            ("trip_type", pa.int64()),
            ("congestion_surcharge", pa.float64()),
            ("cbd_congestion_fee", pa.float64()),
        ]
    )
    data = {
        "VendorID": [2, 6, 1],
        "lpep_pickup_datetime": PICKUPS,
        "lpep_dropoff_datetime": DROPOFFS,
        "store_and_fwd_flag": ["N", None, "Y"],
        "RatecodeID": [1, None, 99],
        "PULocationID": [74, 41, 264],
        "DOLocationID": [75, 42, 1],
        "passenger_count": [1, None, 0],
        "trip_distance": [1.5, 3.25, 0.0],
        "fare_amount": [8.5, 14.0, 20.0],
        "tip_amount": [1.0, 0.0, 0.0],
        "ehail_fee": [None, None, None],
        "total_amount": [10.8, 15.3, 20.3],
        "payment_type": [1, None, 3],
        "trip_type": [1, None, 2],
        "congestion_surcharge": [2.75, 0.0, 0.0],
        "cbd_congestion_fee": [0.75, 0.0, 0.0],
    }
    path = write_parquet(pa.table(data, schema=schema), "green_tripdata_2025-01.parquet")
    frame, report = read_trips(path)

    assert_canonical(frame)
    assert ints(frame, "VendorID") == [2, 6, 1]
    assert ints(frame, "RatecodeID") == [1, None, 99]
    assert ints(frame, "passenger_count") == [1, None, 0]
    assert ints(frame, "PULocationID") == [74, 41, 264]
    assert ints(frame, "trip_type") == [1, None, 2]
    assert times(frame, "pickup_datetime") == PICKUPS
    assert report.source_types["PULocationID"] == "int32"
    assert report.source_types["passenger_count"] == "int64"
    assert report.coerced_to_null == {}
    assert {"cbd_congestion_fee", "store_and_fwd_flag", "ehail_fee", "congestion_surcharge"} <= set(
        report.ignored_columns
    )


def test_yellow_variant_with_tpep_names_and_airport_fee(write_parquet):
    schema = pa.schema(
        [
            ("VendorID", pa.int32()),
            ("tpep_pickup_datetime", pa.timestamp("us")),
            ("tpep_dropoff_datetime", pa.timestamp("us")),
            ("passenger_count", pa.int64()),
            ("trip_distance", pa.float64()),
            ("RatecodeID", pa.int64()),
            ("store_and_fwd_flag", pa.large_string()),
            ("PULocationID", pa.int32()),
            ("DOLocationID", pa.int32()),
            ("payment_type", pa.int64()),
            ("fare_amount", pa.float64()),
            ("tip_amount", pa.float64()),
            ("total_amount", pa.float64()),
            ("congestion_surcharge", pa.float64()),
            ("Airport_fee", pa.float64()),
        ]
    )
    data = {
        "VendorID": [1, 2, 2],
        "tpep_pickup_datetime": PICKUPS,
        "tpep_dropoff_datetime": DROPOFFS,
        "passenger_count": [1, 3, None],
        "trip_distance": [1.5, 3.25, 0.0],
        "RatecodeID": [1, 2, None],
        "store_and_fwd_flag": ["N", "N", None],
        "PULocationID": [132, 138, 264],
        "DOLocationID": [75, 42, 1],
        "payment_type": [1, 2, 0],
        "fare_amount": [8.5, 14.0, 20.0],
        "tip_amount": [1.0, 0.0, 0.0],
        "total_amount": [10.8, 15.3, 20.3],
        "congestion_surcharge": [2.5, 0.0, None],
        "Airport_fee": [0.0, 1.25, None],
    }
    path = write_parquet(pa.table(data, schema=schema), "yellow_tripdata_2023-01.parquet")
    frame, report = read_trips(path)

    assert_canonical(frame)
    assert report.source_columns["pickup_datetime"] == "tpep_pickup_datetime"
    assert report.source_columns["dropoff_datetime"] == "tpep_dropoff_datetime"
    assert report.source_columns["trip_type"] is None  # yellow files have no trip_type
    assert frame["trip_type"].isna().all()
    assert times(frame, "pickup_datetime") == PICKUPS
    assert times(frame, "dropoff_datetime") == DROPOFFS
    assert ints(frame, "PULocationID") == [132, 138, 264]
    assert ints(frame, "passenger_count") == [1, 3, None]
    assert "Airport_fee" in report.ignored_columns
    assert "airport_fee" not in frame.columns and "Airport_fee" not in frame.columns


def test_column_names_are_matched_case_insensitively(write_parquet):
    table = minimal_table().rename_columns(
        [
            "LPEP_pickup_datetime",
            "lpep_dropoff_datetime",
            "pulocationid",
            "DOLocationID",
            "Trip_Distance",
            "fare_amount",
            "tip_amount",
            "total_amount",
        ]
    )
    frame, report = read_trips(write_parquet(table))
    assert report.source_columns["pickup_datetime"] == "LPEP_pickup_datetime"
    assert report.source_columns["PULocationID"] == "pulocationid"
    assert ints(frame, "PULocationID") == [74, 41, 264]
    assert frame["trip_distance"].tolist() == [1.5, 3.25, 0.0]


def test_timestamps_stored_as_strings_are_parsed_and_bad_ones_counted(write_parquet):
    table = minimal_table(
        lpep_pickup_datetime=pa.array(["2021-01-01 10:00:00", "not a date", None], pa.string()),
        lpep_dropoff_datetime=pa.array(["2021-01-01 10:20:00", "2021-01-03 00:10:00", "2021-01-31T08:45:00"]),
    )
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert times(frame, "pickup_datetime") == [dt.datetime(2021, 1, 1, 10, 0), None, None]
    assert times(frame, "dropoff_datetime") == DROPOFFS
    assert report.coerced_to_null == {"pickup_datetime": 1}  # the null was already null: not counted


def test_timezone_aware_timestamps_become_naive_new_york_time(write_parquet):
    utc = dt.UTC
    table = minimal_table(
        lpep_pickup_datetime=pa.array(
            [
                dt.datetime(2021, 1, 1, 15, 0, tzinfo=utc),  # EST: UTC-5
                dt.datetime(2021, 7, 1, 15, 0, tzinfo=utc),  # EDT: UTC-4
                dt.datetime(2021, 1, 1, 3, 30, tzinfo=utc),  # previous local day
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        lpep_dropoff_datetime=pa.array(
            [dt.datetime(2021, 1, 1, 15, 20, tzinfo=utc), None, dt.datetime(2021, 1, 1, 4, 0, tzinfo=utc)],
            pa.timestamp("ms", tz="UTC"),
        ),
    )
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert frame["pickup_datetime"].dt.tz is None
    assert times(frame, "pickup_datetime") == [
        dt.datetime(2021, 1, 1, 10, 0),
        dt.datetime(2021, 7, 1, 11, 0),
        dt.datetime(2020, 12, 31, 22, 30),
    ]
    assert times(frame, "dropoff_datetime") == [dt.datetime(2021, 1, 1, 10, 20), None, dt.datetime(2020, 12, 31, 23)]
    assert report.coerced_to_null == {}


def test_timestamp_units_other_than_microseconds_are_converted(write_parquet):
    table = minimal_table(
        lpep_pickup_datetime=pa.array(PICKUPS, pa.timestamp("ns")),
        lpep_dropoff_datetime=pa.array(DROPOFFS, pa.timestamp("s")),
    )
    frame, _ = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert times(frame, "pickup_datetime") == PICKUPS
    assert times(frame, "dropoff_datetime") == DROPOFFS


def test_strings_and_out_of_range_values_in_numeric_columns_become_null_and_are_counted(write_parquet):
    table = minimal_table(
        PULocationID=pa.array(["74", "x", None], pa.string()),
        DOLocationID=pa.array([75.0, 42.5, 2.0**40], pa.float64()),  # non-integral and beyond int32
        trip_distance=pa.array(["1.5", "abc", "2"], pa.large_string()),
        fare_amount=pa.array(["8.5", "", None], pa.string()),
    )
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert ints(frame, "PULocationID") == [74, None, None]
    assert ints(frame, "DOLocationID") == [75, None, None]
    assert frame["trip_distance"].tolist()[0] == 1.5
    assert np.isnan(frame["trip_distance"].tolist()[1])
    assert frame["trip_distance"].tolist()[2] == 2.0
    assert report.coerced_to_null == {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1, "fare_amount": 1}


def test_dictionary_encoded_and_null_typed_columns(write_parquet):
    table = minimal_table(
        PULocationID=pa.array(["74", "41", "74"]).dictionary_encode(),
        trip_type=pa.nulls(3, pa.null()),
    )
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert ints(frame, "PULocationID") == [74, 41, 74]
    assert frame["trip_type"].isna().all()
    assert report.coerced_to_null == {}


def test_columns_argument_narrows_the_output(write_parquet):
    frame, report = read_trips(
        write_parquet(green_2021_table()), columns=("pickup_datetime", "PULocationID", "trip_distance")
    )
    assert list(frame.columns) == ["pickup_datetime", "PULocationID", "trip_distance"]
    assert set(report.source_columns) == {"pickup_datetime", "PULocationID", "trip_distance"}


def test_missing_optional_float_columns_become_null(write_parquet):
    table = minimal_table().drop_columns(["fare_amount", "tip_amount", "total_amount"])
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert frame["fare_amount"].isna().all()
    assert report.source_columns["fare_amount"] is None


@pytest.mark.filterwarnings("ignore:.*mixed time zones:FutureWarning")
def test_timestamp_strings_with_mixed_offsets_are_parsed_or_refused_with_the_file_name(write_parquet):
    table = minimal_table(
        lpep_pickup_datetime=pa.array(["2021-01-01 10:00:00", "2021-01-02T15:05:00Z", None], pa.string())
    )
    path = write_parquet(table)
    try:
        frame, _ = read_trips(path)
    except TripDataError as exc:
        assert str(path) in str(exc)
        assert "lpep_pickup_datetime" in str(exc)
    else:
        assert_canonical(frame)
        assert times(frame, "pickup_datetime")[:2] == [dt.datetime(2021, 1, 1, 10), dt.datetime(2021, 1, 2, 10, 5)]


# ----------------------------------------------------------------------------------------- bad input
def test_csv_renamed_to_parquet_is_refused_with_the_path(tmp_path):
    path = tmp_path / "green_tripdata_2021-01.parquet"
    path.write_text("VendorID,lpep_pickup_datetime\n2,2021-01-01 00:15:56\n")
    with pytest.raises(TripDataError, match=re.escape(str(path)) + ".*not a readable parquet file"):
        read_trips(path)


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_parquet_is_refused_with_the_path(write_parquet, keep):
    path = write_parquet(green_2021_table())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TripDataError, match=re.escape(str(path))):
        read_trips(path)


def test_missing_file_is_refused_with_the_path(tmp_path):
    path = tmp_path / "absent.parquet"
    with pytest.raises(TripDataError, match=re.escape(str(path)) + ": file not found"):
        read_trips(path)


def test_zero_row_parquet_is_refused(write_parquet):
    path = write_parquet(green_2021_table().slice(0, 0))
    with pytest.raises(TripDataError, match=re.escape(str(path)) + ".*zero rows"):
        read_trips(path)


@pytest.mark.parametrize("column", ["PULocationID", "lpep_dropoff_datetime", "trip_distance"])
def test_file_missing_a_required_column_is_refused_naming_it(write_parquet, column):
    path = write_parquet(minimal_table().drop_columns([column]))
    canonical = "dropoff_datetime" if column == "lpep_dropoff_datetime" else column
    assert canonical in REQUIRED_COLUMNS
    with pytest.raises(TripDataError, match=re.escape(str(path)) + f".*required column '{canonical}' is missing"):
        read_trips(path)


@pytest.mark.parametrize("second_name", ["PULocationID", "pulocationid"])
def test_duplicate_column_names_are_refused_naming_the_column(write_parquet, second_name):
    base = minimal_table()
    table = pa.Table.from_arrays(
        [*base.columns, pa.array([1, 2, 3], pa.int64())],
        names=[*base.column_names, second_name],
    )
    path = write_parquet(table)
    assert pq.read_schema(path).names.count("PULocationID") >= 1
    expected = re.escape(str(path)) + ".*(?i:column 'PULocationID' appears more than once)"
    with pytest.raises(TripDataError, match=expected):
        read_trips(path)


def test_duplicate_unused_columns_are_tolerated(write_parquet):
    base = minimal_table()
    table = pa.Table.from_arrays(
        [*base.columns, pa.array([0.0] * 3), pa.array([1.0] * 3)], names=[*base.column_names, "extra", "extra"]
    )
    frame, report = read_trips(write_parquet(table))
    assert len(frame) == 3
    assert report.ignored_columns.count("extra") == 2


def test_numeric_timestamps_are_refused_naming_the_column(write_parquet):
    table = minimal_table(lpep_pickup_datetime=pa.array([1609495200, 1609495300, 1609495400], pa.int64()))
    path = write_parquet(table)
    with pytest.raises(TripDataError, match=re.escape(str(path)) + ".*'lpep_pickup_datetime' holds numbers"):
        read_trips(path)
