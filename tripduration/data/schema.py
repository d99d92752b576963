"""The canonical trip schema and the reader that maps any TLC file variant onto it.

TLC changed column types between years (int64 vs int32 location IDs, double vs nullable int64 counts,
all-null ``null``-typed columns, ``large_string`` flags, extra columns) and the yellow files name their
timestamps ``tpep_*`` where green ones say ``lpep_*``. The reader therefore works by contract: it looks
up each canonical column by its known source names (case-insensitively), reads only those columns, and
coerces each one to the canonical dtype. Values that cannot be coerced become null and are counted, so
the validation rules can reject the affected rows with a reason instead of losing them silently.

The type contract (``COLUMN_TYPES``, in tripduration/data/columns.py) says which Arrow types may mean each
canonical column. It is checked on the file's Arrow schema before any column is converted (and again on each
column as read), so what a column means never depends on what pandas happens to make of it. Dictionary-encoded
columns count as their value type; an all-``null`` column is accepted everywhere (it holds no value to misread).

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
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tripduration.data.columns import CANONICAL_DTYPES, REQUIRED_COLUMNS, SOURCE_NAMES, check_column_type
from tripduration.data.convert import all_null, convert_column
from tripduration.errors import TripDataError


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
    required column, has a column of a type the contract (``COLUMN_TYPES``) refuses, or decodes to
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

    Every source column's type is checked against ``COLUMN_TYPES`` first, so a refused type fails the
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
        series, lost = convert_column(col, canonical, name, report.path)
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
            out[canonical] = all_null(CANONICAL_DTYPES[canonical], report.rows)
    # copy=False: the columns become the frame's columns; a copy would hold the month twice
    return pd.DataFrame({c: out[c] for c in report.source_columns}, copy=False)


def _check_length(col: pa.ChunkedArray, name: str, report: ReadReport) -> None:
    if len(col) != report.rows:
        raise TripDataError(
            f"{report.path}: column {name!r} has {len(col)} rows where the columns before it have {report.rows}; "
            "the file is corrupt. Re-download it."
        )
