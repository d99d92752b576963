"""The canonical trip schema and the reader that maps any TLC file variant onto it.

TLC changed column types between years (int64 vs int32 location IDs, double vs nullable int64 counts,
all-null ``null``-typed columns, ``large_string`` flags, extra columns) and the yellow files name their
timestamps ``tpep_*`` where green ones say ``lpep_*``. The reader therefore works by contract: it looks
up each canonical column by its known source names (case-insensitively), reads only those columns, and
coerces each one to the canonical dtype. Values that cannot be coerced become null and are counted, so
the validation rules can reject the affected rows with a reason instead of losing them silently.

The type contract (:data:`COLUMN_TYPES`) says which Arrow types may mean each canonical column. It is
checked on the file's Arrow schema before any column is converted (and again on each column as read), so
what a column means never depends on what pandas happens to make of it. Dictionary-encoded columns count
as their value type; an all-``null`` column is accepted everywhere (it holds no value to misread).

==================  ===========================================  ============================================
canonical columns   accepted Arrow types                         refused (the file fails naming file, column
                                                                 and type), and why
==================  ===========================================  ============================================
pickup_datetime,    ``timestamp[s|ms|us|ns]``: naive = New York  numbers (the unit and zone would be guesses);
dropoff_datetime    local time, with a zone = converted to it;   ``date32/date64`` (no time of day: every trip
                    strings holding a full ISO 8601 date-time    would last 0 minutes or whole days);
                    (``YYYY-MM-DD[T ]HH:MM[:SS[.f]]``, optional  ``time32/time64`` (no date: it would become
                    ``Z``/``±HH[:]MM`` offset)                   today's date); bool, duration, binary, nested
VendorID,           ``int8..int64``, ``uint8..uint64``; floats   bool (True would become ID 1: zone 1, one
RatecodeID,         and decimals (non-integral values are        passenger); dates, times, timestamps,
PULocationID,       rejected rows); strings of digits            durations, binary, nested
DOLocationID,
passenger_count,
trip_type,
payment_type
trip_distance,      integers, floats, decimals; numeric strings  bool; ``duration`` (a time, not miles or
fare_amount,                                                     dollars); dates, times, timestamps, binary,
tip_amount,                                                      nested
total_amount
==================  ===========================================  ============================================

Within an accepted type, a *value* that cannot mean its column is a rejected row, never a crash and never a
guess: it becomes null, is counted in ``ReadReport.coerced_to_null`` and marked in ``ReadReport.coerced_rows``
(the rules reject the row as ``invalid_pickup_datetime``/``invalid_dropoff_datetime`` for a timestamp,
else as the first rule it breaks or ``invalid_value``). Such values are: timestamps outside
:data:`TIMESTAMP_RANGE` (years 1, 9999, 262145... would overflow pandas or are no trip time), strings that are
not a full date-time (``"08:00:00"``, ``"2021-01-05"``, ``"yesterday"``: a missing date or time is not
filled in from the clock), ID strings that are not digits (``"1e2"``, ``"74.0"``), non-integral or int32-overflowing
IDs. A column of date-time strings with a zone *name* (``"... UTC"``, ``"... EST"``) fails as a whole: the
names are ambiguous and the whole column would be misread.

Row counts come from the decoded rows: every column read must hold as many rows as the footer (file and row
groups) says, otherwise the file is refused as corrupt rather than padded with invented rows. A path that is
not a regular file (FIFO, directory, socket, device) is refused before it is opened
(:func:`check_regular_file`), so a FIFO cannot block a task forever.
"""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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

_TIMEZONE = "America/New_York"


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


def check_regular_file(path: str | Path, what: str = "an input data file") -> Path:
    """Return ``path`` if it is a regular file (symlinks to one are fine); else fail at once naming it.

    A FIFO in place of a raw file would block the reading task forever on ``open``; a directory, socket or
    device is no data either. ``os.stat`` does not open the file, so this never blocks. (It guards against
    accidents, not against a file swapped between the check and the open.)
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        dangling = f" (a symlink to {p.readlink()}, which does not exist)" if p.is_symlink() else ""
        raise TripDataError(f"{path}: file not found{dangling}") from None
    except OSError as exc:
        raise TripDataError(f"{path}: cannot be inspected ({exc.strerror}); check its permissions.") from exc
    if not stat.S_ISREG(mode):
        raise TripDataError(
            f"{path}: is {_file_kind(mode)}, not a regular file; {what} must be a regular file "
            "(a symlink to one is fine). Replace it with the file itself."
        )
    return p


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), f"a special file (mode {stat.filemode(mode)})")


@dataclass
class ReadReport:
    """What the reader did to the data: which source column fed each canonical one, what it coerced."""

    path: str
    rows: int
    source_columns: dict[str, str | None] = field(default_factory=dict)
    source_types: dict[str, str] = field(default_factory=dict)
    coerced_to_null: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    #: per row: a value was present in the file but could not be read as its column's type (set by normalise)
    coerced_rows: np.ndarray | None = None
    #: the same, per canonical column (only columns where a value was lost)
    coerced_by_column: dict[str, np.ndarray] = field(default_factory=dict)

    def unreadable(self, columns: Collection[str]) -> np.ndarray | None:
        """Rows where a value of one of ``columns`` could not be read (None if there is none)."""
        masks = [m for c, m in self.coerced_by_column.items() if c in columns]
        return np.logical_or.reduce(masks) if masks else None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "rows": self.rows,
            "source_columns": self.source_columns,
            "source_types": self.source_types,
            "coerced_to_null": self.coerced_to_null,
            "ignored_columns": self.ignored_columns,
        }


def open_parquet(path: str | Path) -> pq.ParquetFile:
    """Open a parquet file, or raise :class:`TripDataError` naming it and saying what to do.

    The path must be a regular file (:func:`check_regular_file`): a FIFO would block ``open`` forever.
    """
    check_regular_file(path, "a trip file")
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise TripDataError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise TripDataError(
            f"{path}: not a readable parquet file ({exc}). Delete it so that it is downloaded again, "
            "or replace it with the original TLC file."
        ) from exc


def resolve_columns(names: list[str], path: str | Path) -> dict[str, str | None]:
    """Map canonical columns to the file's column names; fail on duplicates and missing required ones."""
    dupes = sorted(n for n, c in Counter(n.lower() for n in names).items() if c > 1)
    lowered = {n.lower(): n for n in names}
    mapping: dict[str, str | None] = {}
    for canonical, candidates in SOURCE_NAMES.items():
        found = next((lowered[c.lower()] for c in candidates if c.lower() in lowered), None)
        if found is not None and found.lower() in dupes:
            raise TripDataError(
                f"{path}: column {found!r} appears more than once "
                f"(as {[n for n in names if n.lower() == found.lower()]}); "
                "the file is ambiguous. Rewrite it with unique column names."
            )
        if found is None and canonical in REQUIRED_COLUMNS:
            raise TripDataError(
                f"{path}: required column {canonical!r} is missing (looked for {list(candidates)}; "
                f"the file has {names}). Check that this is a TLC trip-record file of a supported colour."
            )
        mapping[canonical] = found
    return mapping


def read_trips(path: str | Path, columns: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, ReadReport]:
    """Read a TLC trip file into the canonical schema.

    Only the canonical columns are read (``columns`` narrows them further), one at a time. Raises
    :class:`TripDataError` if the path is not a regular file, the file is not parquet, has no rows, lacks a
    required column, has a column of a type the contract (:data:`COLUMN_TYPES`) refuses, or decodes to
    another number of rows than its footer claims.
    """
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    mapping = resolve_columns(names, path)
    wanted = [c for c in CANONICAL_DTYPES if columns is None or c in columns]
    if pf.metadata.num_rows == 0:
        raise TripDataError(f"{path}: the file has zero rows; a TLC month always has trips. Re-download it.")
    sources = [mapping[c] for c in wanted if mapping[c] is not None]
    reader = _ParquetColumns(pf, path)
    report = ReadReport(
        path=str(path),
        rows=0 if sources else len(reader.column(str(mapping[REQUIRED_COLUMNS[0]]))),  # set from the rows read
        source_columns={c: mapping[c] for c in wanted},
        source_types={name: str(pf.schema_arrow.field(name).type) for c in wanted if (name := mapping[c])},
        ignored_columns=[n for n in names if n not in sources],
    )
    frame = normalise(reader, report)
    return frame, report


class _ParquetColumns:
    """A parquet file's columns, read one at a time: while the canonical frame is built, only one raw
    column is in memory beside it (reading all at once took 4.2x the frame's size at 10M rows).

    Every column read must hold the rows the footer claims (file and row groups): pyarrow decodes what the
    pages hold whatever the footer says, and a footer that lies is a corrupt file, not a reason to invent or
    drop rows.
    """

    def __init__(self, pf: pq.ParquetFile, path: str | Path) -> None:
        self.pf, self.path = pf, path
        self.schema = pf.schema_arrow
        meta = pf.metadata
        self.footer_rows = meta.num_rows
        self.group_rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))

    def column(self, name: str) -> pa.ChunkedArray:
        try:
            col = self.pf.read(columns=[name]).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise TripDataError(
                f"{self.path}: the parquet data of column {name!r} cannot be decoded ({exc}). Re-download the file."
            ) from exc
        if not len(col) == self.footer_rows == self.group_rows:
            raise TripDataError(
                f"{self.path}: the parquet footer says {self.footer_rows} rows (its row groups {self.group_rows}) "
                f"but column {name!r} decodes to {len(col)} rows; the file is corrupt or was altered. "
                "Re-download it."
            )
        return col


class _TableColumns:
    """An in-memory Arrow table (or pandas frame) seen like :class:`_ParquetColumns`."""

    def __init__(self, table: pa.Table | pd.DataFrame) -> None:
        self.table = pa.Table.from_pandas(table, preserve_index=False) if isinstance(table, pd.DataFrame) else table
        self.schema = self.table.schema

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)


def normalise(table: pa.Table | _ParquetColumns | pd.DataFrame, report: ReadReport) -> pd.DataFrame:
    """Coerce each column to its canonical dtype; count values that could not be coerced.

    Every source column's type is checked against :data:`COLUMN_TYPES` first, so a refused type fails the
    file before any column is read or converted. ``report.rows`` becomes the number of rows read.
    """
    source = table if isinstance(table, _ParquetColumns) else _TableColumns(table)
    present = {c: s for c, s in report.source_columns.items() if s is not None}
    for canonical, name in present.items():
        check_column_type(canonical, name, source.schema.field(name).type, report.path)
    out: dict[str, pd.Series] = {}
    for canonical, name in present.items():
        col = source.column(name)
        if out:
            _check_length(col, name, report)
        report.rows = len(col)
        series, lost = _convert(col, canonical, name, report.path)
        del col
        if lost is not None and lost.any():
            report.coerced_to_null[canonical] = int(lost.sum())
            report.coerced_rows = lost if report.coerced_rows is None else report.coerced_rows | lost
            report.coerced_by_column[canonical] = lost
        out[canonical] = (
            series.reset_index(drop=True) if not series.index.equals(pd.RangeIndex(len(series))) else series
        )
    for canonical in report.source_columns:
        if canonical not in out:
            out[canonical] = _all_null(CANONICAL_DTYPES[canonical], report.rows)
    # copy=False: the columns become the frame's columns; a copy would hold the month twice
    return pd.DataFrame({c: out[c] for c in report.source_columns}, copy=False)


def _check_length(col: pa.ChunkedArray, name: str, report: ReadReport) -> None:
    if len(col) != report.rows:
        raise TripDataError(
            f"{report.path}: column {name!r} has {len(col)} rows where the columns before it have {report.rows}; "
            "the file is corrupt. Re-download it."
        )


def _all_null(dtype: str, n: int) -> pd.Series:
    if dtype.startswith("datetime"):
        return pd.Series(np.full(n, np.datetime64("NaT"), dtype=dtype))
    if dtype == "float64":
        return pd.Series(np.full(n, np.nan), dtype=dtype)
    return pd.Series(pd.array([pd.NA] * n, dtype=dtype))


def _convert(col: pa.ChunkedArray, canonical: str, source: str, path: str) -> tuple[pd.Series, np.ndarray | None]:
    """Convert one checked column; return it and, per row, whether a value present in the file was nulled.

    Whatever goes wrong in here is reported as a :class:`TripDataError` naming the file and the column.
    """
    family = check_column_type(canonical, source, col.type, path)  # the type as read, not only as declared
    dtype = CANONICAL_DTYPES[canonical]
    if family == "null":
        return _all_null(dtype, len(col)), None
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
        series = series.dt.tz_convert(_TIMEZONE).dt.tz_localize(None)
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
        out[aware] = parsed.dt.tz_convert(_TIMEZONE).dt.tz_localize(None).astype("datetime64[us]")
    low, high = TIMESTAMP_RANGE
    return out.mask((out < low) | (out > high))
