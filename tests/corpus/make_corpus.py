#!/usr/bin/env python
"""Generate the corpus of broken and unusual TLC input files.

    python tests/corpus/make_corpus.py [OUT_DIR]        # default: tests/corpus/generated

Every case is one folder ``OUT_DIR/<case>/green_tripdata_2021-01.parquet`` (the name the pipeline looks
for, whatever the content: a CSV renamed to .parquet is still called .parquet), derived deterministically
(fixed seed) from a few hundred rows of the real ``data/green_tripdata_2021-01.parquet``. ``OUT_DIR/cases.json``
is the manifest: for each case the file, its sha256, and the expected outcome:

- ``"error"``: the pipeline must refuse the file with a message containing every string of
  ``message_contains`` (``{path}`` stands for the path the file is read from): the file, the column when the
  problem is in one (``column``), and what to do (``advice``);
- ``"processed"``: the pipeline must validate the file, with ``rows_in == rows_kept + rows_rejected``; the
  expected counts (``rows_kept``, ``rows_rejected``, ``rejected_by_reason`` — exact, unlisted reasons are 0 —,
  ``rejected_reasons_at_least`` — lower bounds, for when some rows' reason cannot be named —,
  ``coerced_to_null`` — exact —) and ``kept_stats`` (aggregates of the kept rows, see :func:`kept_stats`)
  are given where they are known (``null`` = not checked).

Most cases start from ``BASE_ROWS`` *clean* rows (picked by a filter stricter than the pipeline's rules and
written independently of them, so every row must be kept) and break chosen rows, so the expected counts are
exact. ``real_sample`` is the only case with the real data's own dirt. Nothing here imports the project's
code: the expectations are not derived from the code they test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data" / "green_tripdata_2021-01.parquet"
DEFAULT_OUT = ROOT / "tests" / "corpus" / "generated"
MONTH = "2021-01"
FILE_NAME = f"green_tripdata_{MONTH}.parquet"
MANIFEST = "cases.json"
BASE_ROWS = 300
SEED = 20210101
#: stands for the path the file is read from in ``message_contains``
PATH_PLACEHOLDER = "{path}"
#: the column order of a yellow-taxi file (tpep_ timestamps, Airport_fee, no trip_type nor ehail_fee)
YELLOW_ORDER = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
    "Airport_fee",
]

#: the raw green 2021 column of each canonical column the corpus manipulates
GREEN = {
    "pickup_datetime": "lpep_pickup_datetime",
    "dropoff_datetime": "lpep_dropoff_datetime",
    "PULocationID": "PULocationID",
    "DOLocationID": "DOLocationID",
    "trip_distance": "trip_distance",
}
#: columns whose null counts among kept rows are part of ``kept_stats``
NULL_COUNTED = ("VendorID", "RatecodeID", "passenger_count", "trip_type", "payment_type", "fare_amount")

# advice of the reader's messages (tripduration/data/schema.py); the corpus states what a user must be told
ADVICE_UNREADABLE = "downloaded again"
ADVICE_REDOWNLOAD = "Re-download"
ADVICE_MISSING = "Check that this is a TLC trip-record file"
ADVICE_DUPLICATE = "Rewrite it with unique column names"
ADVICE_NUMERIC_TIME = "convert it to a timestamp type"
ADVICE_STRING_TIME = "store timestamps as a parquet timestamp type"
ADVICE_TIMESTAMP_TYPE = "convert it to a timestamp type"
ADVICE_INTEGER_TYPE = "rewrite the column as integers"
ADVICE_FLOAT_TYPE = "rewrite the column as float64"


# ----------------------------------------------------------------------------------------- shared helpers
def kept_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """Aggregates of kept trips in canonical columns, to compare what was kept with what should have been."""

    def iso(value: Any) -> str | None:
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()

    return {
        "rows": len(frame),
        "PULocationID_sum": int(frame["PULocationID"].astype("int64").sum()),
        "DOLocationID_sum": int(frame["DOLocationID"].astype("int64").sum()),
        "trip_distance_sum": round(float(frame["trip_distance"].astype("float64").sum()), 6),
        "pickup_min": iso(frame["pickup_datetime"].min()),
        "pickup_max": iso(frame["pickup_datetime"].max()),
        "dropoff_min": iso(frame["dropoff_datetime"].min()),
        "dropoff_max": iso(frame["dropoff_datetime"].max()),
        "null_counts": {c: int(frame[c].isna().sum()) for c in NULL_COUNTED},
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def replace(table: pa.Table, name: str, array: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with column ``name`` replaced in place (same position), possibly with another type."""
    return table.set_column(table.schema.get_field_index(name), name, array)


def set_at(table: pa.Table, name: str, rows: Iterable[int], value: Any, type_: pa.DataType | None = None) -> pa.Table:
    """``table`` with ``value`` written into column ``name`` at ``rows`` (a NaN stays a NaN, not a null)."""
    values = table.column(name).to_pylist()
    for i in rows:
        values[i] = value(values[i]) if callable(value) else value
    return replace(table, name, pa.array(values, type=type_ or table.schema.field(name).type))


def with_type(table: pa.Table, types: dict[str, pa.DataType]) -> pa.Table:
    """``table`` with some columns cast (int64 -> int32, double -> int64, null -> double, ...)."""
    schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in table.schema])
    return table.cast(schema)


def clean_rows(frame: pd.DataFrame) -> np.ndarray:
    """Indices of rows any sensible rule keeps: pickup in the month, 2..59 min, known zones, 0.1..90 miles."""
    start, end = pd.Timestamp(f"{MONTH}-01"), pd.Timestamp(f"{MONTH}-01") + pd.offsets.MonthBegin(1)
    pickup, dropoff = frame["lpep_pickup_datetime"], frame["lpep_dropoff_datetime"]
    minutes = (dropoff - pickup).dt.total_seconds() / 60
    ok = (
        (pickup >= start)
        & (pickup < end)
        & minutes.between(2, 59)
        & frame["PULocationID"].between(1, 263)
        & frame["DOLocationID"].between(1, 263)
        & frame["trip_distance"].between(0.1, 90)
    )
    return np.flatnonzero(ok.to_numpy())


# ----------------------------------------------------------------------------------------- case context
@dataclass
class Context:
    """What a case builder gets: the clean base rows, a raw sample, its own random generator and its path."""

    name: str
    base: pa.Table
    raw_sample: pa.Table
    rng: np.random.Generator
    path: Path

    def pick(self, *sizes: int) -> list[list[int]]:
        """Disjoint sorted lists of base row indices, one per size."""
        order = self.rng.permutation(self.base.num_rows)
        out, start = [], 0
        for size in sizes:
            out.append(sorted(int(i) for i in order[start : start + size]))
            start += size
        return out

    def write(self, table: pa.Table, **kwargs: Any) -> None:
        pq.write_table(table, self.path, **kwargs)

    def canonical_base(self) -> pd.DataFrame:
        frame = self.base.to_pandas()
        return frame.rename(columns={v: k for k, v in GREEN.items()})

    # ------------------------------------------------------------------ expectations
    def error(self, *contains: str, column: str | None, advice: str) -> dict[str, Any]:
        message = [PATH_PLACEHOLDER, *contains]
        for required in (column, advice):
            if required and not any(required in part for part in message):
                message.append(required)
        return {"outcome": "error", "column": column, "advice": advice, "message_contains": message}

    def processed(
        self,
        rejected: dict[str, Sequence[int]] | None = None,
        *,
        coerced: dict[str, int] | None = None,
        nulled: dict[str, Sequence[int]] | None = None,
        stats: bool = True,
        unknown_reason_rows: Sequence[int] = (),
    ) -> dict[str, Any]:
        """Expectations of a case built on the clean base: ``rejected`` maps a reason to the rows it must
        reject, ``nulled`` maps a column to rows that must be kept with a null there, ``unknown_reason_rows``
        are rows that must be rejected by a rule that does not exist yet (so their reason is not named)."""
        rejected = rejected or {}
        frame = self.canonical_base()
        for column, rows in (nulled or {}).items():
            frame[column] = frame[column].astype("float64")
            frame.loc[list(rows), column] = np.nan
        out_rows = sorted({i for rows in rejected.values() for i in rows} | set(unknown_reason_rows))
        kept = frame.drop(index=out_rows)
        counts = {reason: len(rows) for reason, rows in rejected.items() if rows}
        return {
            "outcome": "processed",
            "rows_in": self.base.num_rows,
            "rows_kept": len(kept),
            "rows_rejected": len(out_rows),
            "rejected_by_reason": None if unknown_reason_rows else counts,
            "rejected_reasons_at_least": counts,
            "coerced_to_null": coerced or {},
            "kept_stats": kept_stats(kept) if stats else None,
        }


CaseBuilder = Callable[[Context], dict[str, Any]]
CASES: dict[str, CaseBuilder] = {}


def case(builder: CaseBuilder) -> CaseBuilder:
    CASES[builder.__name__.removeprefix("case_")] = builder
    return builder


# ----------------------------------------------------------------------------------------- unreadable files
@case
def case_truncated_parquet(ctx: Context) -> dict[str, Any]:
    """A download cut off at 60% of its bytes (no parquet footer)."""
    ctx.write(ctx.base)
    data = ctx.path.read_bytes()
    ctx.path.write_bytes(data[: int(len(data) * 0.6)])
    return ctx.error("not a readable parquet file", column=None, advice=ADVICE_UNREADABLE)


@case
def case_csv_renamed(ctx: Context) -> dict[str, Any]:
    """The same trips saved as CSV under the .parquet name."""
    ctx.base.to_pandas().to_csv(ctx.path, index=False)
    return ctx.error("not a readable parquet file", column=None, advice=ADVICE_UNREADABLE)


@case
def case_empty_file(ctx: Context) -> dict[str, Any]:
    """A 0-byte file (an interrupted copy)."""
    ctx.path.write_bytes(b"")
    return ctx.error("not a readable parquet file", column=None, advice=ADVICE_UNREADABLE)


@case
def case_corrupt_column_chunk(ctx: Context) -> dict[str, Any]:
    """Footer intact, but a third of the PULocationID column chunk overwritten with random bytes."""
    ctx.write(ctx.base)
    row_group = pq.ParquetFile(ctx.path).metadata.row_group(0)
    columns = [row_group.column(i) for i in range(row_group.num_columns)]
    chunk = next(c for c in columns if c.path_in_schema == "PULocationID")
    start = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size // 3
    size = chunk.total_compressed_size // 3
    data = bytearray(ctx.path.read_bytes())
    data[start : start + size] = ctx.rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    ctx.path.write_bytes(bytes(data))
    return ctx.error("cannot be decoded", column="PULocationID", advice=ADVICE_REDOWNLOAD)


@case
def case_zero_rows(ctx: Context) -> dict[str, Any]:
    """A valid parquet file with the 2021 schema and no rows."""
    ctx.write(ctx.base.slice(0, 0))
    return ctx.error("zero rows", column=None, advice=ADVICE_REDOWNLOAD)


# ----------------------------------------------------------------------------------------- columns
def _missing(canonical: str) -> CaseBuilder:
    def build(ctx: Context) -> dict[str, Any]:
        ctx.write(ctx.base.drop_columns([GREEN[canonical]]))
        return ctx.error(
            f"required column '{canonical}' is missing", GREEN[canonical], column=canonical, advice=ADVICE_MISSING
        )

    build.__name__ = f"case_missing_required_column_{canonical}"
    build.__doc__ = f"The file lacks {GREEN[canonical]!r} (canonical {canonical!r})."
    return build


for _canonical in GREEN:
    case(_missing(_canonical))


@case
def case_duplicate_column_names(ctx: Context) -> dict[str, Any]:
    """PULocationID twice, with different values: which one is meant cannot be known."""
    second = pa.array(ctx.rng.permutation(ctx.base.column("PULocationID").to_numpy()), pa.int64())
    table = pa.Table.from_arrays([*ctx.base.columns, second], names=[*ctx.base.column_names, "PULocationID"])
    ctx.write(table)
    return ctx.error("'PULocationID' appears more than once", column="PULocationID", advice=ADVICE_DUPLICATE)


@case
def case_duplicate_column_names_case(ctx: Context) -> dict[str, Any]:
    """trip_distance and Trip_Distance: the same column once names are matched case-insensitively."""
    second = pc.multiply(ctx.base.column("trip_distance"), 1.609)  # kilometres, say
    table = pa.Table.from_arrays([*ctx.base.columns, second], names=[*ctx.base.column_names, "Trip_Distance"])
    ctx.write(table)
    return ctx.error("appears more than once", "trip_distance", column="trip_distance", advice=ADVICE_DUPLICATE)


@case
def case_duplicate_unused_columns(ctx: Context) -> dict[str, Any]:
    """A column the pipeline does not read ('extra') appears twice: harmless, the file is processed."""
    extra = ctx.base.column("extra")
    ctx.write(pa.Table.from_arrays([*ctx.base.columns, extra], names=[*ctx.base.column_names, "extra"]))
    return ctx.processed()


@case
def case_extra_unknown_columns(ctx: Context) -> dict[str, Any]:
    """Columns no TLC reader knows, of unusual types (list, struct, large_string) and a later fee column."""
    n = ctx.base.num_rows
    table = ctx.base
    table = table.append_column("cbd_congestion_fee", pa.array(np.round(ctx.rng.random(n), 2)))
    table = table.append_column("tags", pa.array([["a", "b"] if i % 3 else [] for i in range(n)]))
    table = table.append_column("meta", pa.array([{"source": "app", "rev": i % 5} for i in range(n)]))
    table = table.append_column("pickup_zone_name", pa.array([f"zone {i}" for i in range(n)], pa.large_string()))
    table = table.append_column("Airport_fee", pa.nulls(n, pa.float64()))
    ctx.write(table)
    return ctx.processed()


@case
def case_only_required_columns(ctx: Context) -> dict[str, Any]:
    """Only the five required columns: the optional ones become null, every row is kept."""
    ctx.write(ctx.base.select(list(GREEN.values())))
    n = ctx.base.num_rows
    return ctx.processed(nulled={c: range(n) for c in NULL_COUNTED})


@case
def case_null_typed_required_column(ctx: Context) -> dict[str, Any]:
    """trip_distance present but of parquet type null (all values missing): every row is rejected."""
    n = ctx.base.num_rows
    ctx.write(replace(ctx.base, "trip_distance", pa.nulls(n)))
    return ctx.processed({"invalid_distance": range(n)})


# ----------------------------------------------------------------------------------------- values
@case
def case_all_rows_rejected(ctx: Context) -> dict[str, Any]:
    """Every trip a year early (a file of 2020-01 saved under the 2021-01 name): all outside the month."""
    table = ctx.base
    for col in (GREEN["pickup_datetime"], GREEN["dropoff_datetime"]):
        table = set_at(table, col, range(table.num_rows), lambda t: t - dt.timedelta(days=366))
    ctx.write(table)
    return ctx.processed({"pickup_outside_month": range(table.num_rows)})


@case
def case_strings_in_numeric(ctx: Context) -> dict[str, Any]:
    """trip_distance and PULocationID stored as strings, some of them not numbers ('abc', 'x')."""
    abc, x = ctx.pick(8, 6)
    distance = [repr(v) for v in ctx.base.column("trip_distance").to_pylist()]
    pu = [str(v) for v in ctx.base.column("PULocationID").to_pylist()]
    for i in abc:
        distance[i] = "abc"
    for i in x:
        pu[i] = "x"
    table = replace(ctx.base, "trip_distance", pa.array(distance, pa.string()))
    table = replace(table, "PULocationID", pa.array(pu, pa.string()))
    ctx.write(table)
    return ctx.processed(
        {"missing_location": x, "invalid_distance": abc}, coerced={"PULocationID": len(x), "trip_distance": len(abc)}
    )


def _timestamp_strings(values: Sequence[dt.datetime], rng: np.random.Generator) -> list[str]:
    formats = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")
    return [
        v.strftime(formats[int(k)]) for v, k in zip(values, rng.integers(0, len(formats), len(values)), strict=True)
    ]


@case
def case_timestamps_as_strings(ctx: Context) -> dict[str, Any]:
    """Both timestamps stored as strings (three layouts), some of them garbage."""
    bad_pickup, bad_dropoff = ctx.pick(7, 5)
    table = ctx.base
    garbage = {
        "pickup": ["not a date", "2021-13-45 25:61:00", "", "N/A", "1609495200", "31/31/2021", "yesterday"],
        "dropoff": ["??", "2021-02-30 10:00:00", "soon", "0000-00-00 00:00:00", "-"],
    }
    for key, bad in (("pickup", bad_pickup), ("dropoff", bad_dropoff)):
        col = GREEN[f"{key}_datetime"]
        values = _timestamp_strings(table.column(col).to_pylist(), ctx.rng)
        for i, junk in zip(bad, garbage[key], strict=True):
            values[i] = junk
        table = replace(table, col, pa.array(values, pa.string()))
    ctx.write(table)
    return ctx.processed(
        {"invalid_pickup_datetime": bad_pickup, "invalid_dropoff_datetime": bad_dropoff},
        coerced={"pickup_datetime": len(bad_pickup), "dropoff_datetime": len(bad_dropoff)},
    )


def _utc(values: Sequence[dt.datetime]) -> pd.Series:
    return pd.Series(pd.to_datetime(values)).dt.tz_localize("America/New_York").dt.tz_convert("UTC")


@case
def case_timestamps_as_strings_with_offsets(ctx: Context) -> dict[str, Any]:
    """Timestamps as ISO strings with an offset ('...Z' in UTC, or '-05:00'): converted to New York time."""
    table = ctx.base
    for col in (GREEN["pickup_datetime"], GREEN["dropoff_datetime"]):
        local = table.column(col).to_pylist()
        utc = _utc(local)
        values = [
            u.strftime("%Y-%m-%dT%H:%M:%SZ") if i % 2 else v.strftime("%Y-%m-%dT%H:%M:%S-05:00")
            for i, (u, v) in enumerate(zip(utc, local, strict=True))
        ]
        table = replace(table, col, pa.array(values, pa.string()))
    ctx.write(table)
    return ctx.processed()


@case
def case_timestamps_as_strings_with_zone_names(ctx: Context) -> dict[str, Any]:
    """Pickup times as strings with a zone name ('2021-01-05 15:00:00 UTC'), not a numeric offset."""
    col = GREEN["pickup_datetime"]
    values = [u.strftime("%Y-%m-%d %H:%M:%S UTC") for u in _utc(ctx.base.column(col).to_pylist())]
    ctx.write(replace(ctx.base, col, pa.array(values, pa.string())))
    return ctx.error(col, column=col, advice=ADVICE_STRING_TIME)


@case
def case_timestamps_as_numbers(ctx: Context) -> dict[str, Any]:
    """Pickup times as epoch seconds (int64): refused, the unit and zone would be guesses."""
    col = GREEN["pickup_datetime"]
    seconds = pc.divide(ctx.base.column(col).cast(pa.int64()), 1_000_000)
    ctx.write(replace(ctx.base, col, seconds))
    return ctx.error(f"'{col}' holds numbers", column=col, advice=ADVICE_NUMERIC_TIME)


def _tz_aware(ctx: Context, tz: str) -> pa.Table:
    table = ctx.base
    for col in (GREEN["pickup_datetime"], GREEN["dropoff_datetime"]):
        local = pc.assume_timezone(table.column(col), "America/New_York")
        table = replace(table, col, local.cast(pa.timestamp("us", tz=tz)))
    return table


@case
def case_tz_aware_timestamps(ctx: Context) -> dict[str, Any]:
    """The same instants stored as timezone-aware UTC timestamps: converted back to New York local time."""
    ctx.write(_tz_aware(ctx, "UTC"))
    return ctx.processed()


@case
def case_tz_aware_new_york(ctx: Context) -> dict[str, Any]:
    """The same instants stored as timezone-aware America/New_York timestamps."""
    ctx.write(_tz_aware(ctx, "America/New_York"))
    return ctx.processed()


@case
def case_nan_and_inf(ctx: Context) -> dict[str, Any]:
    """trip_distance NaN, inf and -inf (float values, not nulls); fare_amount NaN (not a model input: kept)."""
    nan, inf, neg_inf, fare = ctx.pick(5, 4, 3, 6)
    table = set_at(ctx.base, "trip_distance", nan, float("nan"))
    table = set_at(table, "trip_distance", inf, float("inf"))
    table = set_at(table, "trip_distance", neg_inf, float("-inf"))
    table = set_at(table, "fare_amount", fare, float("nan"))
    ctx.write(table)
    return ctx.processed(
        {"invalid_distance": nan, "absurd_distance": inf, "negative_distance": neg_inf}, nulled={"fare_amount": fare}
    )


@case
def case_absurd_magnitudes(ctx: Context) -> dict[str, Any]:
    """Distances of 1e9 and 150 miles, zone 70000 and -7, a dropoff a century later, a pickup in 1900."""
    far, long_, pu, do, century, old = ctx.pick(4, 2, 3, 2, 2, 2)
    table = set_at(ctx.base, "trip_distance", far, 1e9)
    table = set_at(table, "trip_distance", long_, 150.0)
    table = set_at(table, "PULocationID", pu, 70000)
    table = set_at(table, "DOLocationID", do, -7)
    table = set_at(table, GREEN["dropoff_datetime"], century, lambda t: t.replace(year=2121))
    table = set_at(table, GREEN["pickup_datetime"], old, lambda t: t.replace(year=1900))
    table = set_at(table, "fare_amount", range(table.num_rows), lambda f: f * 1e300 if f else f)  # not a rule
    ctx.write(table)
    return ctx.processed(
        {
            "pickup_outside_month": old,
            "unknown_location": pu + do,
            "duration_out_of_range": century,
            "absurd_distance": far + long_,
        }
    )


@case
def case_absurd_passenger_count(ctx: Context) -> dict[str, Any]:
    """passenger_count 1e12 (beyond int32): the value cannot be coerced, so the row must be rejected."""
    (rows,) = ctx.pick(5)
    ctx.write(set_at(ctx.base, "passenger_count", rows, 1e12))
    return ctx.processed(unknown_reason_rows=rows, coerced={"passenger_count": len(rows)})


# ----------------------------------------------------------------------------------------- type contract
@case
def case_timestamp_strings_without_a_full_date_time(ctx: Context) -> dict[str, Any]:
    """Timestamp strings that are not a full date-time ('08:15:00', '2021-01-05', 'Jan 05 10:00') or out of
    range ('0001-01-01 00:00:00', '9999-12-31 23:59:59'): rejected rows, never today's date nor a crash."""
    time_only, date_only, far, bad_dropoff = ctx.pick(5, 4, 3, 4)
    table = ctx.base
    values = {}
    for key in ("pickup", "dropoff"):
        col = GREEN[f"{key}_datetime"]
        values[key] = [v.strftime("%Y-%m-%d %H:%M:%S") for v in table.column(col).to_pylist()]
    for i in time_only:
        values["pickup"][i] = values["pickup"][i][11:]  # '08:15:00'
    for i in date_only:
        values["pickup"][i] = values["pickup"][i][:10]  # '2021-01-05'
    for i, junk in zip(far, ["0001-01-01 00:00:00", "9999-12-31 23:59:59", "262145-01-01 00:00:00"], strict=True):
        values["pickup"][i] = junk
    for i, junk in zip(bad_dropoff, ["10:00", "Jan 05 10:00", "2021-01-05", "0001-01-01T00:00:00Z"], strict=True):
        values["dropoff"][i] = junk
    for key in ("pickup", "dropoff"):
        table = replace(table, GREEN[f"{key}_datetime"], pa.array(values[key], pa.string()))
    ctx.write(table)
    pickup = time_only + date_only + far
    return ctx.processed(
        {"invalid_pickup_datetime": pickup, "invalid_dropoff_datetime": bad_dropoff},
        coerced={"pickup_datetime": len(pickup), "dropoff_datetime": len(bad_dropoff)},
    )


#: epoch milliseconds of 1 January of a year, for years Python's datetime cannot hold
def _epoch_ms(year: int) -> int:
    days = (np.datetime64(f"{year:+07d}-01-01", "D") - np.datetime64("1970-01-01", "D")).astype("int64")
    return int(days) * 86_400_000


@case
def case_out_of_range_timestamps(ctx: Context) -> dict[str, Any]:
    """Millisecond timestamps in years 1, 9999, 262145 and 2**62 ms (146 million years): rejected rows, no crash."""
    far_pickup, far_dropoff = ctx.pick(4, 3)
    table = ctx.base
    for key, rows, values in (
        ("pickup", far_pickup, [_epoch_ms(1), _epoch_ms(9999), _epoch_ms(262145), 2**62]),
        ("dropoff", far_dropoff, [_epoch_ms(1), -(2**62), _epoch_ms(9999)]),
    ):
        col = GREEN[f"{key}_datetime"]
        ms = table.column(col).cast(pa.timestamp("ms")).cast(pa.int64()).to_pylist()
        for i, v in zip(rows, values, strict=True):
            ms[i] = v
        table = replace(table, col, pa.array(ms, pa.int64()).cast(pa.timestamp("ms")))
    ctx.write(table)
    return ctx.processed(
        {"invalid_pickup_datetime": far_pickup, "invalid_dropoff_datetime": far_dropoff},
        coerced={"pickup_datetime": len(far_pickup), "dropoff_datetime": len(far_dropoff)},
    )


@case
def case_time64_timestamps(ctx: Context) -> dict[str, Any]:
    """Pickup times as time64 (a time of day, no date): refused, it would become today's date."""
    col = GREEN["pickup_datetime"]
    times = [v.time() for v in ctx.base.column(col).to_pylist()]
    ctx.write(replace(ctx.base, col, pa.array(times, pa.time64("us"))))
    return ctx.error(f"'{col}' holds times of day", "time64[us]", column=col, advice=ADVICE_TIMESTAMP_TYPE)


@case
def case_date32_timestamps(ctx: Context) -> dict[str, Any]:
    """Both timestamps as date32 (no time of day): refused, every trip would last 0 minutes or whole days."""
    table = ctx.base
    for col in (GREEN["pickup_datetime"], GREEN["dropoff_datetime"]):
        table = replace(table, col, pa.array([v.date() for v in table.column(col).to_pylist()], pa.date32()))
    ctx.write(table)
    col = GREEN["pickup_datetime"]
    return ctx.error(f"'{col}' holds dates", "date32[day]", column=col, advice=ADVICE_TIMESTAMP_TYPE)


@case
def case_boolean_location_ids(ctx: Context) -> dict[str, Any]:
    """PULocationID stored as booleans (odd zone = True): refused, True must not become zone 1."""
    odd = pc.equal(pc.bit_wise_and(ctx.base.column("PULocationID"), 1), 1)
    ctx.write(replace(ctx.base, "PULocationID", odd))
    return ctx.error(
        "'PULocationID' holds booleans", "Arrow type bool", column="PULocationID", advice=ADVICE_INTEGER_TYPE
    )


@case
def case_duration_trip_distance(ctx: Context) -> dict[str, Any]:
    """trip_distance stored as a duration (seconds): refused, a duration is not miles."""
    seconds = pc.cast(pc.round(pc.multiply(ctx.base.column("trip_distance"), 600)), pa.int64()).cast(pa.duration("s"))
    ctx.write(replace(ctx.base, "trip_distance", seconds))
    return ctx.error("'trip_distance' holds durations", "duration[s]", column="trip_distance", advice=ADVICE_FLOAT_TYPE)


@case
def case_unsigned_and_decimal_types(ctx: Context) -> dict[str, Any]:
    """Accepted types TLC never used: uint16/uint64 zones, uint8 VendorID, int8 counts, decimal distances."""
    table = with_type(
        ctx.base,
        {
            "PULocationID": pa.uint16(),
            "DOLocationID": pa.uint64(),
            "VendorID": pa.uint8(),
            "passenger_count": pa.int8(),
        },
    )
    distance = [Decimal(repr(v)) for v in table.column("trip_distance").to_pylist()]
    ctx.write(replace(table, "trip_distance", pa.array(distance, pa.decimal128(12, 4))))
    return ctx.processed()


@case
def case_id_strings_not_digits(ctx: Context) -> dict[str, Any]:
    """PULocationID as strings, some of them numbers but not digits ('1e2', '7.4e1', '74.0', '0x4A')."""
    (rows,) = ctx.pick(4)
    pu = [str(v) for v in ctx.base.column("PULocationID").to_pylist()]
    for i, junk in zip(rows, ["1e2", "7.4e1", "74.0", "0x4A"], strict=True):
        pu[i] = junk
    ctx.write(replace(ctx.base, "PULocationID", pa.array(pu, pa.string())))
    return ctx.processed({"missing_location": rows}, coerced={"PULocationID": len(rows)})


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@case
def case_footer_claims_one_more_row(ctx: Context) -> dict[str, Any]:
    """The footer's num_rows says one row more than the data holds (pyarrow decodes the real rows silently):
    refused as corrupt, instead of one invented (rejected) row."""
    ctx.write(ctx.base)
    data = bytearray(ctx.path.read_bytes())
    size = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - size
    # FileMetaData.num_rows: thrift compact field 3 (i64: 0x16), zigzag varint, then the row_groups list (0x19 0x1c)
    n = ctx.base.num_rows
    old, new = (b"\x16" + _varint(2 * k) + b"\x19\x1c" for k in (n, n + 1))
    assert len(old) == len(new) and data.count(old, start) == 1, "cannot locate FileMetaData.num_rows"
    at = data.index(old, start)
    data[at : at + len(old)] = new
    ctx.path.write_bytes(bytes(data))
    assert pq.ParquetFile(ctx.path).metadata.num_rows == n + 1
    return ctx.error("footer says 301 rows", "decodes to 300 rows", column=None, advice=ADVICE_REDOWNLOAD)


# ----------------------------------------------------------------------------------------- TLC type variants
#: green files of later years (synthesised from the 2021 rows; only the layout changes)
V2022 = {
    "lpep_pickup_datetime": pa.timestamp("ns"),
    "lpep_dropoff_datetime": pa.timestamp("ns"),
    "RatecodeID": pa.int64(),
    "passenger_count": pa.int64(),
    "payment_type": pa.int64(),
    "trip_type": pa.int64(),
    "ehail_fee": pa.float64(),
}
V2023 = {
    **V2022,
    "lpep_pickup_datetime": pa.timestamp("us"),
    "lpep_dropoff_datetime": pa.timestamp("us"),
    "VendorID": pa.int32(),
    "PULocationID": pa.int32(),
    "DOLocationID": pa.int32(),
    "store_and_fwd_flag": pa.large_string(),
}


@case
def case_v2021(ctx: Context) -> dict[str, Any]:
    """The 2021 layout as is: int64 IDs, double codes and counts, null-typed ehail_fee."""
    ctx.write(ctx.base)
    return ctx.processed()


@case
def case_real_sample(ctx: Context) -> dict[str, Any]:
    """Random real rows with their own dirt (2009 pickups, 0-minute trips, 244152-mile trips...)."""
    ctx.write(ctx.raw_sample)
    return {**ctx.processed(stats=False), "rows_kept": None, "rows_rejected": None, "rejected_by_reason": None}


@case
def case_v2022(ctx: Context) -> dict[str, Any]:
    """Nullable int64 codes and counts (with their nulls), double ehail_fee, nanosecond timestamps."""
    ctx.write(with_type(ctx.base, V2022))
    return ctx.processed()


@case
def case_v2023_large_string(ctx: Context) -> dict[str, Any]:
    """int32 VendorID and location IDs, large_string store_and_fwd_flag, int64 codes and counts."""
    ctx.write(with_type(ctx.base, V2023))
    return ctx.processed()


@case
def case_v2025_cbd_fee(ctx: Context) -> dict[str, Any]:
    """The 2023 layout plus the 2025 cbd_congestion_fee column."""
    table = with_type(ctx.base, V2023)
    ctx.write(
        table.append_column("cbd_congestion_fee", pa.array(np.where(ctx.rng.random(table.num_rows) < 0.3, 0.75, 0)))
    )
    return ctx.processed()


@case
def case_yellow(ctx: Context) -> dict[str, Any]:
    """Yellow layout: tpep_ timestamps, Airport_fee, no trip_type nor ehail_fee, yellow column order."""
    table = with_type(ctx.base, V2023).rename_columns([n.replace("lpep_", "tpep_") for n in ctx.base.column_names])
    table = table.append_column("Airport_fee", pa.array(np.where(ctx.rng.random(table.num_rows) < 0.1, 1.25, 0.0)))
    ctx.write(table.select(YELLOW_ORDER))
    return ctx.processed(nulled={"trip_type": range(table.num_rows)})


@case
def case_dictionary_encoded(ctx: Context) -> dict[str, Any]:
    """Dictionary-encoded columns: store_and_fwd_flag (string), PULocationID (as strings), DOLocationID (int)."""
    table = replace(ctx.base, "store_and_fwd_flag", ctx.base.column("store_and_fwd_flag").dictionary_encode())
    pu = ctx.base.column("PULocationID").cast(pa.string()).dictionary_encode()
    table = replace(table, "PULocationID", pu)
    table = replace(table, "DOLocationID", ctx.base.column("DOLocationID").dictionary_encode())
    ctx.write(table)
    return ctx.processed()


@case
def case_uppercase_column_names(ctx: Context) -> dict[str, Any]:
    """Every column name upper-cased (LPEP_PICKUP_DATETIME, PULOCATIONID...)."""
    ctx.write(ctx.base.rename_columns([n.upper() for n in ctx.base.column_names]))
    return ctx.processed()


@case
def case_lowercase_column_names(ctx: Context) -> dict[str, Any]:
    """Every column name lower-cased (vendorid, pulocationid, ratecodeid...)."""
    ctx.write(ctx.base.rename_columns([n.lower() for n in ctx.base.column_names]))
    return ctx.processed()


CASE_NAMES: tuple[str, ...] = tuple(CASES)


# ----------------------------------------------------------------------------------------- driver
def source_rows(source: Path = SOURCE) -> tuple[pa.Table, pa.Table]:
    """(``BASE_ROWS`` clean rows, ``BASE_ROWS`` raw rows) of the real month, each in the file's order."""
    table = pq.read_table(source)
    rng = np.random.default_rng(SEED)
    clean = clean_rows(table.select(list(GREEN.values())).to_pandas())
    base = np.sort(rng.choice(clean, size=BASE_ROWS, replace=False))
    raw = np.sort(rng.choice(table.num_rows, size=BASE_ROWS, replace=False))
    return table.take(pa.array(base)), table.take(pa.array(raw))


def make_corpus(out_dir: str | Path = DEFAULT_OUT, source: Path = SOURCE) -> dict[str, Any]:
    """Write every case under ``out_dir`` (replacing what was there) and the manifest; return the manifest."""
    out = Path(out_dir)
    base, raw_sample = source_rows(source)
    manifest: dict[str, Any] = {
        "generator": "tests/corpus/make_corpus.py",
        "source": source.name,
        "seed": SEED,
        "month": MONTH,
        "file_name": FILE_NAME,
        "base_rows": BASE_ROWS,
        "path_placeholder": PATH_PLACEHOLDER,
        "cases": {},
    }
    for name, builder in CASES.items():
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
        ctx = Context(name=name, base=base, raw_sample=raw_sample, rng=rng, path=folder / FILE_NAME)
        expected = builder(ctx)
        manifest["cases"][name] = {
            "file": f"{name}/{FILE_NAME}",
            "description": " ".join((builder.__doc__ or "").split()),
            "bytes": ctx.path.stat().st_size,
            "sha256": sha256(ctx.path),
            **expected,
        }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(DEFAULT_OUT), help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    manifest = make_corpus(args.out_dir)
    outcomes = [c["outcome"] for c in manifest["cases"].values()]
    print(
        f"{len(outcomes)} cases in {args.out_dir} ({outcomes.count('error')} error, "
        f"{outcomes.count('processed')} processed); manifest {Path(args.out_dir) / MANIFEST}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
