"""The validation step: read a raw month by contract, check it against the zone lookup, split it into kept and
rejected rows with a summary that records the sha256 of the bytes read."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from tripduration.data.rules import OUTCOME_COLUMNS, Rules, split_trips
from tripduration.data.schema import check_regular_file, read_trips
from tripduration.errors import TripDataError
from tripduration.io.content import FileStamp, sha256_stream, stamp
from tripduration.runtime.progress import Progress, no_progress


def validate_trip_file(
    path: str | Path, month: dt.date, rules: Rules, valid_location_ids: Collection[int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read a raw TLC file by contract and split it into kept and rejected rows with a summary.

    The summary's ``source`` holds the sha256 and size of the bytes that were read, so the lineage a model
    records later comes from the same read as its row counts and metrics (see :func:`read_unchanged`).
    """
    (trips, report), digest, size = read_unchanged(path, read_trips)
    dispatch = [c for c in report.source_columns if c not in OUTCOME_COLUMNS]
    kept, rejected, summary = split_trips(
        trips, month, rules, valid_location_ids, report.unreadable(dispatch), report.unreadable(OUTCOME_COLUMNS)
    )
    summary["source"] = {**report.as_dict(), "sha256": digest, "bytes": size}
    return kept, rejected, summary


def validated_month(
    trips_path: str | Path,
    zones_path: str | Path,
    month: dt.date,
    rules: Rules,
    names: tuple[str, str] | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Validate one raw month against the zone lookup: the three outputs of the validation step.

    ``{"kept.parquet": kept rows, "rejected.parquet": rejected rows with a reason, "summary.json": counts}``;
    the summary records the sha256 of the bytes read of both files (``source`` and ``zone_lookup``), under
    ``names`` (where the files live, e.g. an object-storage URL) or else their paths.
    """
    trips_name, zones_name = names or (str(trips_path), str(zones_path))
    zones, zones_sha256 = read_zone_ids(zones_path)
    progress(f"validating {trips_name}", 10)
    kept, rejected, summary = validate_trip_file(trips_path, month, rules, zones)
    summary["source"]["path"] = trips_name
    summary["zone_lookup"] = {"path": zones_name, "sha256": zones_sha256}
    progress(f"{summary['rows_in']} rows: {summary['rows_kept']} kept, {summary['rows_rejected']} rejected", 100)
    return {"kept.parquet": kept, "rejected.parquet": rejected, "summary.json": summary}


def read_unchanged(path: str | Path, reader: Callable[[str | Path], Any]) -> tuple[Any, str, int]:
    """``reader(path)`` with the sha256 and size of the bytes it read.

    The file is hashed through an open handle before it is read, and its stat key (size, mtime, inode) must
    be the same after the read: a file replaced or rewritten meanwhile fails instead of pairing one file's
    digest with another's rows.
    """
    with open_regular_file(path) as fh:
        before = FileStamp.of(os.fstat(fh.fileno()))
        digest = sha256_stream(fh)
    result = reader(path)
    if stamp(path) != before:
        raise TripDataError(f"{path}: the file changed while it was being read; run again to read the new one")
    return result, digest, before.size


def open_regular_file(path: str | Path) -> BinaryIO:
    """Open a regular file for reading; a FIFO, folder or device fails at once naming the path.

    :func:`~tripduration.data.schema.check_regular_file` says what is wrong without opening anything; the open
    itself does not block either (``O_NONBLOCK``), and the opened file is checked again, so a file swapped
    for a FIFO between the two never blocks the task.
    """
    check_regular_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        check_regular_file(path)  # names what it became
        raise TripDataError(f"{path}: is not a regular file any more")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_zone_ids(path: str | Path) -> tuple[set[int], str]:
    """The LocationIDs of the TLC zone lookup CSV, and the sha256 of the bytes they were read from."""

    def ids(p: str | Path) -> set[int]:
        try:
            column = pd.read_csv(p, usecols=["LocationID"])["LocationID"]
        except (ValueError, pd.errors.ParserError) as exc:
            raise TripDataError(f"{p}: not a TLC zone lookup CSV with a LocationID column ({exc})") from exc
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.isna().any() or (numbers != numbers.round()).any():
            bad = column[numbers.isna() | (numbers != numbers.round())].iloc[0]
            raise TripDataError(f"{p}: column 'LocationID' holds {bad!r}, not an integer zone ID")
        return {int(v) for v in numbers}

    zones, digest, _size = read_unchanged(path, ids)
    return zones, digest
