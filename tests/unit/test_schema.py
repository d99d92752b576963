"""read_trips maps every TLC file variant onto the canonical schema, or fails naming the file and column."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tripduration.data.schema import CANONICAL_DTYPES, REQUIRED_COLUMNS, read_trips
from tripduration.errors import TripDataError

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


# ----------------------------------------------------------------------------------------- type contract
def test_the_type_contract_is_one_table_covering_every_canonical_column():
    from tripduration.data import columns, schema

    assert set(columns.COLUMN_TYPES) == set(CANONICAL_DTYPES)
    assert "COLUMN_TYPES" in (schema.__doc__ or "")
    for column, contract in columns.COLUMN_TYPES.items():
        assert "null" in contract.accepts, column  # an all-null column is a column of nulls, whatever its kind
        assert "bool" not in contract.accepts, column
        assert {"other", "binary", "interval"}.isdisjoint(contract.accepts), column
    assert columns.COLUMN_TYPES["pickup_datetime"].accepts == {"timestamp", "string", "null"}
    assert "duration" not in columns.COLUMN_TYPES["trip_distance"].accepts


REFUSED = [
    # (column in minimal_table, Arrow array that cannot mean it)
    ("lpep_pickup_datetime", pa.array([dt.time(10, 0), dt.time(23, 59, 30), dt.time(8, 15)], pa.time64("us"))),
    ("lpep_pickup_datetime", pa.array([36000, 86370, 29700], pa.time32("s"))),
    ("lpep_pickup_datetime", pa.array([d.date() for d in PICKUPS], pa.date32())),
    ("lpep_dropoff_datetime", pa.array([d.date() for d in DROPOFFS], pa.date64())),
    ("lpep_pickup_datetime", pa.array([True, False, True])),
    ("lpep_pickup_datetime", pa.array([dt.timedelta(minutes=m) for m in (1, 2, 3)], pa.duration("us"))),
    ("PULocationID", pa.array([True, False, True])),
    ("DOLocationID", pa.array([True, True, False]).dictionary_encode()),
    ("PULocationID", pa.array([d.date() for d in PICKUPS], pa.date32())),
    ("PULocationID", pa.array([b"74", b"41", b"264"], pa.binary())),
    ("trip_distance", pa.array([True, False, True])),
    ("trip_distance", pa.array([dt.timedelta(minutes=m) for m in (1, 2, 3)], pa.duration("us"))),
    ("trip_distance", pa.array([1, 2, 3], pa.duration("s"))),
    ("trip_distance", pa.array(PICKUPS, pa.timestamp("us"))),
    ("trip_distance", pa.array([[1.5], [3.25], [0.0]])),
    ("fare_amount", pa.array([{"usd": 1.0}, {"usd": 2.0}, {"usd": 3.0}])),
    ("fare_amount", pa.array([True, False, True])),
]


@pytest.mark.parametrize(("column", "array"), REFUSED, ids=[f"{c}-{a.type}" for c, a in REFUSED])
def test_arrow_types_that_cannot_mean_the_column_are_refused_naming_file_column_and_type(write_parquet, column, array):
    path = write_parquet(minimal_table(**{column: array}))
    stored = pq.read_schema(path).field(column).type  # parquet has no time32[s] nor date64: stored as ms, date32
    with pytest.raises(TripDataError) as info:
        read_trips(path)
    message = str(info.value)
    assert str(path) in message
    assert repr(column) in message
    assert f"Arrow type {stored}" in message
    assert "Expected" in message  # says what would have been accepted


def test_a_refused_type_fails_before_any_column_is_read(write_parquet, monkeypatch):
    """The contract is checked on the Arrow schema first: no column is decoded (nor converted) for nothing."""
    from tripduration.data import schema

    read: list[str] = []
    original = schema._ParquetColumns.column

    def column(self: schema._ParquetColumns, name: str) -> pa.ChunkedArray:
        read.append(name)
        return original(self, name)

    monkeypatch.setattr(schema._ParquetColumns, "column", column)
    path = write_parquet(minimal_table(trip_distance=pa.array([True, False, True])))
    with pytest.raises(TripDataError, match="'trip_distance' holds booleans"):
        read_trips(path)
    assert read == []


def test_accepted_arrow_types_are_read_with_their_values(write_parquet):
    from decimal import Decimal

    table = minimal_table(
        lpep_pickup_datetime=pa.array(PICKUPS, pa.timestamp("s")),
        lpep_dropoff_datetime=pa.array(DROPOFFS, pa.timestamp("ms")),
        PULocationID=pa.array([74, 41, 264], pa.uint16()),
        DOLocationID=pa.array([75, 42, 1], pa.uint64()),
        VendorID=pa.array([2, 1, None], pa.int8()),
        RatecodeID=pa.array([Decimal("1"), Decimal("5"), None], pa.decimal128(5, 0)),
        passenger_count=pa.array(["1", " 2 ", None], pa.large_string()),
        trip_distance=pa.array([Decimal("1.5"), Decimal("3.25"), Decimal("0")], pa.decimal128(12, 4)),
        fare_amount=pa.array([8.5, 14.0, 20.0], pa.float32()),
        tip_amount=pa.array([1, 0, 0], pa.uint8()),
        total_amount=pa.array([10.8, 15.3, 20.3], pa.float16()),
    )
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert times(frame, "pickup_datetime") == PICKUPS
    assert times(frame, "dropoff_datetime") == DROPOFFS
    assert ints(frame, "PULocationID") == [74, 41, 264]
    assert ints(frame, "DOLocationID") == [75, 42, 1]
    assert ints(frame, "VendorID") == [2, 1, None]
    assert ints(frame, "RatecodeID") == [1, 5, None]
    assert ints(frame, "passenger_count") == [1, 2, None]
    assert frame["trip_distance"].tolist() == [1.5, 3.25, 0.0]
    assert frame["tip_amount"].tolist() == [1.0, 0.0, 0.0]
    assert report.coerced_to_null == {}


def test_time_only_and_date_only_strings_are_rejected_rows_not_todays_date(write_parquet):
    table = minimal_table(
        lpep_pickup_datetime=pa.array(["08:00:00", "2021-01-05", "2021-01-31 08:15:00"], pa.string()),
        lpep_dropoff_datetime=pa.array(["2021-01-01 10:20:00", "10:30", "Jan 31 08:45"], pa.string()),
    )
    frame, report = read_trips(write_parquet(table))
    assert_canonical(frame)
    assert times(frame, "pickup_datetime") == [None, None, dt.datetime(2021, 1, 31, 8, 15)]
    assert times(frame, "dropoff_datetime") == [dt.datetime(2021, 1, 1, 10, 20), None, None]
    assert report.coerced_to_null == {"pickup_datetime": 2, "dropoff_datetime": 2}
    assert report.coerced_rows.tolist() == [True, True, True]


def test_id_strings_must_be_digits(write_parquet):
    values = ["74", " 41 ", "1e2", "74.0", "0x4A", "true", None, "+7"]
    n = len(values)
    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array([PICKUPS[0]] * n, pa.timestamp("us")),
            "lpep_dropoff_datetime": pa.array([DROPOFFS[0]] * n, pa.timestamp("us")),
            "PULocationID": pa.array(values, pa.string()),
            "DOLocationID": pa.array([75] * n),
            "trip_distance": pa.array([1.5] * n),
        }
    )
    frame, report = read_trips(write_parquet(table))
    assert ints(frame, "PULocationID") == [74, 41, None, None, None, None, None, 7]
    assert report.coerced_to_null == {"PULocationID": 4}


def _epoch(unit: str, year: int) -> int:
    """Seconds/ms/us since the epoch of 1 January of ``year`` (any year, beyond Python's datetime range too)."""
    days = (np.datetime64(f"{year:+07d}-01-01", "D") - np.datetime64("1970-01-01", "D")).astype("int64")
    return int(days) * 86400 * {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]


@pytest.mark.parametrize("tz", [None, "UTC"])
@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_timestamps_out_of_range_are_rejected_rows_not_crashes(write_parquet, unit, tz):
    # far beyond datetime64[us] for s and ms (parquet stores [s] as [ms]: 2**52 s is 2**62 ms, no overflow)
    top = {"s": 2**52, "ms": 2**62, "us": 2**62}[unit]
    values = [_epoch(unit, 2021) + 36000 * {"s": 1, "ms": 1000, "us": 10**6}[unit], _epoch(unit, 1), _epoch(unit, 9999)]
    values += [_epoch(unit, 262145) if unit != "us" else _epoch(unit, 200000), top, -top, None]
    n = len(values)
    pickup = pa.array(values, pa.int64()).cast(pa.timestamp(unit, tz=tz))
    dropoff = pa.array([PICKUPS[0] + dt.timedelta(minutes=20)] * n, pa.timestamp("us"))
    table = pa.table(
        {
            "lpep_pickup_datetime": pickup,
            "lpep_dropoff_datetime": dropoff,
            "PULocationID": pa.array([74] * n),
            "DOLocationID": pa.array([75] * n),
            "trip_distance": pa.array([1.5] * n),
        }
    )
    path = write_parquet(table)
    frame, report = read_trips(path)
    assert_canonical(frame)
    expected_first = dt.datetime(2021, 1, 1, 10) if tz is None else dt.datetime(2021, 1, 1, 5)
    assert times(frame, "pickup_datetime") == [expected_first] + [None] * (n - 1)
    assert report.coerced_to_null == {"pickup_datetime": n - 2}  # the null was already null
    assert report.coerced_rows.tolist() == [False] + [True] * (n - 2) + [False]


def test_timestamp_strings_out_of_range_are_rejected_rows(write_parquet):
    table = minimal_table(
        lpep_pickup_datetime=pa.array(["0001-01-01 00:00:00", "9999-12-31T23:59:59Z", "2021-01-31 08:15:00"]),
    )
    frame, report = read_trips(write_parquet(table))
    assert times(frame, "pickup_datetime") == [None, None, dt.datetime(2021, 1, 31, 8, 15)]
    assert report.coerced_to_null == {"pickup_datetime": 2}


def test_out_of_range_rows_are_rejected_by_the_rules_with_the_count_in_the_summary(write_parquet):
    from tripduration.data.rules import Rules
    from tripduration.data.validation import validate_trip_file

    pickup = pa.array([_epoch("ms", 2021) + 36000_000, _epoch("ms", 1), 2**62], pa.int64()).cast(pa.timestamp("ms"))
    path = write_parquet(minimal_table(lpep_pickup_datetime=pickup))
    _kept, rejected, summary = validate_trip_file(path, dt.date(2021, 1, 1), Rules())
    assert summary["rows_in"] == 3 and summary["rows_kept"] == 1
    assert rejected["pickup_datetime"].isna().all()
    assert summary["rejected_by_reason"]["invalid_pickup_datetime"] == 2
    assert summary["source"]["coerced_to_null"] == {"pickup_datetime": 2}


def test_an_exception_escaping_a_conversion_becomes_a_trip_data_error_naming_file_and_column(
    write_parquet, monkeypatch
):
    from tripduration.data import convert

    def explode(*_args: object, **_kwargs: object) -> None:
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(convert, "_to_float", explode)
    path = write_parquet(minimal_table())
    with pytest.raises(TripDataError) as info:
        read_trips(path)
    assert str(path) in str(info.value) and "'trip_distance'" in str(info.value)
    assert "Python int too large" in str(info.value)


# ----------------------------------------------------------------------------------------- row counts
def lie_about_rows(path, file_rows: int | None = None, group_rows: int | None = None) -> None:
    """Rewrite the footer of a 3-row, 1-row-group parquet file so that it claims other row counts.

    In the thrift compact encoding, FileMetaData.num_rows (field 3, i64) is ``0x16 <zigzag varint>`` followed by
    the row_groups list header (``0x19 0x1c``); RowGroup.num_rows (field 3) follows its total_byte_size and is
    followed by field 4 (``0x26`` or ``0x16``...). 3 rows = zigzag 6; counts < 64 keep the varint one byte.
    """
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - size
    footer = bytes(data[start:-8])
    if file_rows is not None:
        at = footer.index(b"\x16\x06\x19\x1c")
        data[start + at + 1] = 2 * file_rows
    if group_rows is not None:
        at = footer.index(b"\x16\x06\x26")
        data[start + at + 1] = 2 * group_rows
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("file_rows", "group_rows"), [(4, None), (None, 4), (4, 4), (2, None), (2, 2)], ids=str)
def test_a_footer_that_disagrees_with_the_decoded_rows_is_refused_naming_the_file(write_parquet, file_rows, group_rows):
    path = write_parquet(green_2021_table())
    lie_about_rows(path, file_rows, group_rows)
    meta = pq.ParquetFile(path).metadata
    assert (meta.num_rows, meta.row_group(0).num_rows) == (file_rows or 3, group_rows or 3)  # the lie is in place
    assert pq.read_table(path).num_rows == 3  # and pyarrow decodes the 3 rows without a word
    with pytest.raises(TripDataError, match=re.escape(str(path)) + ".*footer.*3 rows.*Re-download"):
        read_trips(path)


def test_report_rows_are_the_decoded_rows_even_when_no_read_column_is_in_the_file(write_parquet):
    path = write_parquet(minimal_table())
    frame, report = read_trips(path)
    assert len(frame) == report.rows == 3
    frame, report = read_trips(path, columns=("trip_type",))  # absent: the rows are counted on another column
    assert len(frame) == report.rows == 3
    assert frame["trip_type"].isna().all()


# ----------------------------------------------------------------------------------------- file kinds
def _release_fifo(path) -> None:
    """Open the FIFO's write end (if a reader is blocked on it) so that a blocked reader thread can end."""
    import contextlib
    import os

    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def _read_in_thread(path, seconds: float = 5.0) -> BaseException | None:
    """Run read_trips(path) in a thread; fail if it is still running after ``seconds`` (it blocked)."""
    import threading

    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            read_trips(path)
            outcome.append(None)
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _release_fifo(path)
        thread.join(seconds)
        pytest.fail(f"read_trips({path}) blocked for {seconds} s instead of failing at once")
    return outcome[0]


def _make_special(kind: str, path) -> None:
    import os
    import socket

    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "symlink_to_fifo":
        os.mkfifo(path.with_name("target.fifo"))
        path.symlink_to(path.with_name("target.fifo"))


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("fifo", "FIFO"),
        ("directory", "directory"),
        ("socket", "socket"),
        ("device", "device"),
        ("symlink_to_fifo", "FIFO"),
    ],
)
def test_non_regular_files_fail_at_once_naming_the_path(kind, words):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="nr") as tmp:  # short: a socket path has a 108-byte limit
        path = Path(tmp) / "green_tripdata_2021-01.parquet"
        _make_special(kind, path)
        exc = _read_in_thread(path)
        assert isinstance(exc, TripDataError), exc
        assert str(path) in str(exc) and words in str(exc) and "must be a regular file" in str(exc)


def test_check_regular_file_accepts_files_and_symlinks_to_them_and_names_missing_ones(tmp_path, write_parquet):
    from tripduration.data.schema import check_regular_file

    real = write_parquet(green_2021_table())
    link = tmp_path / "link.parquet"
    link.symlink_to(real)
    assert check_regular_file(real) == real
    assert check_regular_file(str(link)) == link
    assert len(read_trips(link)[0]) == 3
    dangling = tmp_path / "dangling.parquet"
    dangling.symlink_to(tmp_path / "nowhere.parquet")
    with pytest.raises(TripDataError, match=re.escape(str(dangling)) + ": file not found"):
        check_regular_file(dangling)
