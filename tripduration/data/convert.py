"""Converting one column of a TLC file to its canonical dtype (:data:`tripduration.data.columns.COLUMN_TYPES`).

A value that cannot mean its column becomes null and is marked, so the validation rules reject its row with a
reason; timestamps are converted to New York local time; strings are parsed only when they are full ISO
date-times or digits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tripduration.data.columns import CANONICAL_DTYPES, TIMESTAMP_RANGE, TIMEZONE, check_column_type
from tripduration.errors import TripDataError


def all_null(dtype: str, n: int) -> pd.Series:
    if dtype.startswith("datetime"):
        return pd.Series(np.full(n, np.datetime64("NaT"), dtype=dtype))
    if dtype == "float64":
        return pd.Series(np.full(n, np.nan), dtype=dtype)
    return pd.Series(pd.array([pd.NA] * n, dtype=dtype))


def convert_column(col: pa.ChunkedArray, canonical: str, source: str, path: str) -> tuple[pd.Series, np.ndarray | None]:
    """Convert one checked column; return it and, per row, whether a value present in the file was nulled.

    Whatever goes wrong in here is reported as a :class:`TripDataError` naming the file and the column.
    """
    family = check_column_type(canonical, source, col.type, path)  # the type as read, not only as declared
    dtype = CANONICAL_DTYPES[canonical]
    if family == "null":
        return all_null(dtype, len(col)), None
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    try:
        if dtype.startswith("datetime"):
            return _to_datetime(col, family, path, source)
        if family == "decimal":
            col = col.cast(pa.float64())
        raw = col.to_pandas()
        if family == "string":
            raw = _numeric_strings(raw, integral=dtype == "Int32")
        series = _to_float(raw) if dtype == "float64" else _to_int(raw)
        present = ~col.is_null(nan_is_null=True).to_numpy(zero_copy_only=False)
        return series, present & series.isna().to_numpy()
    except TripDataError:
        raise
    except (ValueError, TypeError, OverflowError, ArithmeticError, pa.ArrowException) as exc:
        raise TripDataError(
            f"{path}: column {source!r} ({col.type}) cannot be read as {CANONICAL_DTYPES[canonical]} "
            f"for {canonical!r} ({type(exc).__name__}: {exc}). Check the column's values, or re-download the file."
        ) from exc


_DIGITS_RE = r"\s*[+-]?\d+\s*"


def _numeric_strings(raw: pd.Series, integral: bool) -> pd.Series:
    """Numbers from strings; for IDs and codes only strings of digits count (``"1e2"``, ``"74.0"`` do not)."""
    text = raw.astype("string")
    if integral:
        text = text.where(text.str.fullmatch(_DIGITS_RE).fillna(False))
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _to_float(raw: pd.Series) -> pd.Series:
    return pd.Series(raw, copy=False).astype("float64")


def _to_int(raw: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(raw) and not isinstance(raw.dtype, pd.api.extensions.ExtensionDtype):
        # numpy integers (no nulls): only the range can be wrong; no float64 round trip
        out_of_range = (raw < -(2**31) + 1) | (raw > 2**31 - 1)
        if not out_of_range.any():
            return raw.astype("Int32")
    values = _to_float(raw)
    # a non-integral value or one beyond int32 is not a valid ID or count: null it (counted by the caller)
    invalid = values.notna() & (~np.isfinite(values) | (values != np.round(values)) | (values.abs() > 2**31 - 1))
    return values.mask(invalid).astype("Int32")


def _to_datetime(col: pa.ChunkedArray, family: str, path: str, source: str) -> tuple[pd.Series, np.ndarray]:
    present = col.is_valid().to_numpy(zero_copy_only=False)
    if family == "timestamp":
        series = _arrow_timestamps(col)
    else:
        series = _parse_timestamp_strings(col.to_pandas().astype("string"), path, source)
    series = series.astype("datetime64[us]")
    return series, present & series.isna().to_numpy()


def _unit_bounds(unit: str) -> tuple[int, int]:
    """:data:`TIMESTAMP_RANGE` as integers of a timestamp ``unit`` since the epoch."""
    per_ns = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    low, high = (t.value for t in TIMESTAMP_RANGE)
    return -(-low // per_ns), high // per_ns


def _arrow_timestamps(col: pa.ChunkedArray) -> pd.Series:
    """Arrow timestamps as naive New York time; values outside :data:`TIMESTAMP_RANGE` become null *in Arrow*,
    before pandas sees them (``timestamp[s]`` can hold years pandas cannot, e.g. 2**62 seconds)."""
    low, high = _unit_bounds(col.type.unit)
    as_int = col.cast(pa.int64())  # the instant (UTC for a zoned type) in the column's unit
    outside = pc.or_(pc.less(as_int, low), pc.greater(as_int, high))
    if pc.any(outside).as_py():  # rebuild the column only when a value is out of range
        col = pc.if_else(outside, pa.scalar(None, col.type), col)
    del as_int, outside
    series = col.to_pandas()
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert(TIMEZONE).dt.tz_localize(None)
    return series


_DATE_TIME_RE = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"


_OFFSET_RE = r"(?:Z|[+-]\d{2}:?\d{2})"


_ZONE_NAME_RE = rf"{_DATE_TIME_RE}\s*[A-Za-z][A-Za-z0-9_/+-]*"


def _parse_timestamp_strings(raw: pd.Series, path: str, source: str) -> pd.Series:
    """Parse full ISO 8601 date-time strings: naive ones are New York local time, ones with an offset are
    converted to it. Anything else (a time without a date, a date without a time, junk, a year out of
    :data:`TIMESTAMP_RANGE`) becomes null, to be counted: pandas would fill a missing date in from the clock."""
    text = raw.str.strip()
    naive = text.str.fullmatch(_DATE_TIME_RE).fillna(False).to_numpy(dtype=bool)
    aware = text.str.fullmatch(_DATE_TIME_RE + _OFFSET_RE).fillna(False).to_numpy(dtype=bool)
    zone_named = text.str.fullmatch(_ZONE_NAME_RE).fillna(False).to_numpy(dtype=bool) & ~aware
    if zone_named.any():
        raise TripDataError(
            f"{path}: column {source!r} holds timestamp strings with a time zone name (e.g. "
            f"{text[zone_named].iloc[0]!r}); zone names are ambiguous and are not parsed: "
            "store timestamps as a parquet timestamp type in New York local time, or write offsets (+00:00)."
        )
    out = pd.Series(np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[us]"), index=raw.index)
    if naive.any():
        out[naive] = pd.to_datetime(text[naive], errors="coerce", format="ISO8601").astype("datetime64[us]")
    if aware.any():
        parsed = pd.to_datetime(text[aware], errors="coerce", format="ISO8601", utc=True)
        out[aware] = parsed.dt.tz_convert(TIMEZONE).dt.tz_localize(None).astype("datetime64[us]")
    low, high = TIMESTAMP_RANGE
    return out.mask((out < low) | (out > high))
