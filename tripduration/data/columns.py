"""The type contract of the canonical trip columns: which pandas dtype each column becomes, which source names it may
have, and which Arrow types may mean it (the table in :mod:`tripduration.data.schema`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tripduration.errors import TripDataError

#: canonical column -> pandas dtype. Integers are nullable because real files have nulls in them.
CANONICAL_DTYPES: dict[str, str] = {
    "pickup_datetime": "datetime64[us]",
    "dropoff_datetime": "datetime64[us]",
    "VendorID": "Int32",
    "RatecodeID": "Int32",
    "PULocationID": "Int32",
    "DOLocationID": "Int32",
    "passenger_count": "Int32",
    "trip_distance": "float64",
    "trip_type": "Int32",
    "payment_type": "Int32",
    "fare_amount": "float64",
    "tip_amount": "float64",
    "total_amount": "float64",
}


#: columns without which a file cannot be used at all
REQUIRED_COLUMNS: tuple[str, ...] = (
    "pickup_datetime",
    "dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "trip_distance",
)


#: known source names for each canonical column, matched case-insensitively
SOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "pickup_datetime": ("lpep_pickup_datetime", "tpep_pickup_datetime", "pickup_datetime"),
    "dropoff_datetime": ("lpep_dropoff_datetime", "tpep_dropoff_datetime", "dropoff_datetime"),
    "VendorID": ("VendorID", "vendor_id"),
    "RatecodeID": ("RatecodeID", "RateCodeID", "rate_code"),
    "PULocationID": ("PULocationID",),
    "DOLocationID": ("DOLocationID",),
    "passenger_count": ("passenger_count",),
    "trip_distance": ("trip_distance",),
    "trip_type": ("trip_type",),
    "payment_type": ("payment_type",),
    "fare_amount": ("fare_amount",),
    "tip_amount": ("tip_amount",),
    "total_amount": ("total_amount",),
}


TIMEZONE = "America/New_York"


# ----------------------------------------------------------------------------------------- type contract
#: Arrow type family -> test; the first that matches names a type (dictionary types: their value type)
_FAMILY_TESTS: tuple[tuple[str, Callable[[pa.DataType], bool]], ...] = (
    ("null", pa.types.is_null),
    ("bool", pa.types.is_boolean),
    ("integer", pa.types.is_integer),
    ("floating", pa.types.is_floating),
    ("decimal", pa.types.is_decimal),
    ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)),
    ("timestamp", pa.types.is_timestamp),
    ("date", pa.types.is_date),
    ("time", pa.types.is_time),
    ("duration", pa.types.is_duration),
    ("interval", pa.types.is_interval),
    (
        "binary",
        lambda t: pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t),
    ),
)


#: how an error message names the values of a refused family
_FAMILY_WORDS: dict[str, str] = {
    "bool": "booleans",
    "integer": "numbers",
    "floating": "numbers",
    "decimal": "numbers",
    "string": "strings",
    "timestamp": "timestamps",
    "date": "dates without a time of day",
    "time": "times of day without a date",
    "duration": "durations",
    "interval": "calendar intervals",
    "binary": "binary data",
    "other": "values of a type no TLC column has",
}


def arrow_family(type_: pa.DataType) -> str:
    """The family of an Arrow type that the contract speaks of (``"other"`` for nested and extension types)."""
    if pa.types.is_dictionary(type_):
        return arrow_family(type_.value_type)
    return next((family for family, test in _FAMILY_TESTS if test(type_)), "other")


@dataclass(frozen=True)
class ColumnType:
    """What a canonical column means and which Arrow type families may carry it."""

    kind: str
    #: Arrow type families (see :func:`arrow_family`) the reader converts; any other fails the file
    accepts: frozenset[str]
    #: what a user is told is expected
    expected: str
    #: family -> why it cannot mean this kind of column (said in the error)
    refusals: dict[str, str]
    #: how to fix the file
    advice: str


_POINT_IN_TIME = "a point in time is not a number"


TIMESTAMP = ColumnType(
    kind="a timestamp",
    accepts=frozenset({"timestamp", "string", "null"}),
    expected=(
        "timestamp[s|ms|us|ns] (without a time zone = New York local time, with one = converted to it) "
        "or strings holding a full ISO 8601 date-time (YYYY-MM-DD HH:MM[:SS[.f]], optional Z or ±HH:MM offset)"
    ),
    refusals={
        "integer": "the unit (s, ms, us...) and the time zone of a number would be guesses",
        "floating": "the unit (s, ms, us...) and the time zone of a number would be guesses",
        "decimal": "the unit (s, ms, us...) and the time zone of a number would be guesses",
        "date": "a date has no time of day, so every trip would last 0 minutes or whole days",
        "time": "a time of day has no date; reading it would put every trip on today's date",
        "duration": "a duration is not a point in time",
        "bool": "a boolean is not a point in time",
    },
    advice="convert it to a timestamp type (TLC files store local New York time)",
)


IDENTIFIER = ColumnType(
    kind="an integer ID or code",
    accepts=frozenset({"integer", "floating", "decimal", "string", "null"}),
    expected="int8..int64, uint8..uint64, floats or decimals with integral values, or strings of digits",
    refusals={
        "bool": "True/False would silently become ID 1/0 (zone 1, one passenger...)",
        "timestamp": _POINT_IN_TIME,
        "date": _POINT_IN_TIME,
        "time": _POINT_IN_TIME,
        "duration": "a duration is not an ID or a count",
    },
    advice="rewrite the column as integers (int32 or int64, as TLC files have)",
)


QUANTITY = ColumnType(
    kind="a number (miles or dollars)",
    accepts=frozenset({"integer", "floating", "decimal", "string", "null"}),
    expected="integers, floats, decimals or numeric strings",
    refusals={
        "bool": "True/False would silently become 1.0/0.0",
        "duration": "a duration is a time, not a distance or an amount",
        "timestamp": _POINT_IN_TIME,
        "date": _POINT_IN_TIME,
        "time": _POINT_IN_TIME,
    },
    advice="rewrite the column as float64 (as TLC files have)",
)


_KIND_OF_DTYPE = {"datetime64[us]": TIMESTAMP, "Int32": IDENTIFIER, "float64": QUANTITY}


#: THE type contract: canonical column -> the Arrow types that may mean it (see the module docstring's table)
COLUMN_TYPES: dict[str, ColumnType] = {c: _KIND_OF_DTYPE[d] for c, d in CANONICAL_DTYPES.items()}


#: canonical timestamps must lie in this range (whole years inside pandas' datetime64[ns] range, so that every
#: pandas operation downstream is safe); a value outside it is no trip time and becomes a rejected row
TIMESTAMP_RANGE: tuple[pd.Timestamp, pd.Timestamp] = (
    pd.Timestamp("1678-01-01"),
    pd.Timestamp("2261-12-31 23:59:59.999999"),
)


def check_column_type(canonical: str, source: str, type_: pa.DataType, path: str | Path) -> str:
    """Return the family of ``type_`` if the contract lets it mean ``canonical``; else fail saying what is expected."""
    family = arrow_family(type_)
    contract = COLUMN_TYPES[canonical]
    if family in contract.accepts:
        return family
    why = contract.refusals.get(family, f"nothing of that type can mean {contract.kind}")
    raise TripDataError(
        f"{path}: column {source!r} holds {_FAMILY_WORDS[family]} (Arrow type {type_}), not {contract.kind} "
        f"for {canonical!r}: {why}. Expected {contract.expected}: {contract.advice}."
    )
