"""Row-level validation rules: split canonical trips into kept and rejected rows, never losing one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tripduration.months import add_months, format_month

#: rejection reasons in the order they are tested; a row gets the first reason that applies
REASONS: tuple[str, ...] = (
    "invalid_pickup_datetime",
    "invalid_dropoff_datetime",
    "pickup_outside_month",
    "missing_location",
    "unknown_location",
    "duration_out_of_range",
    "invalid_distance",
    "negative_distance",
    "absurd_distance",
    "invalid_value",
)


@dataclass(frozen=True)
class Rules:
    """Thresholds of the rules (set from ``[validation]`` in luigi.cfg)."""

    min_duration_min: float = 1.0
    max_duration_min: float = 60.0
    max_distance_miles: float = 100.0


def duration_minutes(pickup: pd.Series, dropoff: pd.Series) -> pd.Series:
    """Trip duration in minutes (float); NaN where either timestamp is missing."""
    return (dropoff - pickup).dt.total_seconds() / 60.0


def rejection_reasons(
    trips: pd.DataFrame,
    month: dt.date,
    rules: Rules,
    valid_location_ids: Collection[int] | None = None,
    unreadable: np.ndarray | None = None,
) -> pd.Series:
    """Return, per row, the first rule the row breaks (or ``None`` if it is kept).

    ``unreadable`` marks rows where the reader had to null a value it could not read as its column's type
    (``ReadReport.coerced_rows``): such rows are rejected as ``invalid_value`` rather than kept with a hole.
    """
    codes = reason_codes(trips, month, rules, valid_location_ids, unreadable)
    names = np.array([None, *REASONS], dtype="object")
    return pd.Series(names[codes], index=trips.index, dtype="object")


def reason_codes(
    trips: pd.DataFrame,
    month: dt.date,
    rules: Rules,
    valid_location_ids: Collection[int] | None = None,
    unreadable: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, 0 if it is kept, else 1 + the index in :data:`REASONS` of the first rule it breaks (int8).

    The compact form of :func:`rejection_reasons`: one byte per row, no Python string per row.
    """
    start = pd.Timestamp(month)
    end = pd.Timestamp(add_months(month, 1))
    pickup, dropoff = trips["pickup_datetime"], trips["dropoff_datetime"]
    duration = duration_minutes(pickup, dropoff)
    distance = trips["trip_distance"].astype("float64")
    pu, do = trips["PULocationID"], trips["DOLocationID"]
    if valid_location_ids is not None:
        ids = np.fromiter(valid_location_ids, dtype="int64")
        unknown = ~(pu.isin(ids) & do.isin(ids))
    else:
        unknown = pd.Series(False, index=trips.index)
    conditions = [
        pickup.isna(),
        dropoff.isna(),
        (pickup < start) | (pickup >= end),
        pu.isna() | do.isna(),
        unknown,
        ~duration.between(rules.min_duration_min, rules.max_duration_min),
        distance.isna(),
        distance < 0,
        ~np.isfinite(distance) | (distance > rules.max_distance_miles),
        np.zeros(len(trips), dtype=bool) if unreadable is None else np.asarray(unreadable, dtype=bool),
    ]
    masks = [np.asarray(pd.Series(c, index=trips.index).fillna(False), dtype=bool) for c in conditions]
    return np.select(masks, np.arange(1, len(REASONS) + 1, dtype="int8"), default=0).astype("int8", copy=False)


def split_trips(
    trips: pd.DataFrame,
    month: dt.date,
    rules: Rules,
    valid_location_ids: Collection[int] | None = None,
    unreadable: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Split ``trips`` into (kept, rejected-with-``reason``, summary).

    ``rows_in == rows_kept + rows_rejected`` always holds; the summary counts rows per reason.
    Kept location IDs are cast to non-null int32 because the rules guarantee they are present.
    """
    codes = reason_codes(trips, month, rules, valid_location_ids, unreadable)
    kept_rows, rejected_rows = np.flatnonzero(codes == 0), np.flatnonzero(codes != 0)
    # take() makes one copy of the kept rows; the location IDs are then cast column by column in place
    # (DataFrame.astype would copy the whole frame again: a 10M-row month held three times)
    kept = trips.take(kept_rows)
    kept.index = pd.RangeIndex(len(kept))
    for col in ("PULocationID", "DOLocationID"):
        kept[col] = kept[col].astype("int32")
    rejected = trips.take(rejected_rows)
    rejected.index = pd.RangeIndex(len(rejected))
    names = np.array(REASONS, dtype="object")
    rejected["reason"] = pd.array(names[codes[rejected_rows] - 1], dtype="string")
    per_reason = np.bincount(codes, minlength=len(REASONS) + 1)[1:]
    counts = {r: int(n) for r, n in zip(REASONS, per_reason, strict=True)}
    summary: dict[str, object] = {
        "month": format_month(month),
        "rows_in": len(trips),
        "rows_kept": len(kept),
        "rows_rejected": len(rejected),
        "rejected_by_reason": counts,
        "rules": {
            "min_duration_min": rules.min_duration_min,
            "max_duration_min": rules.max_duration_min,
            "max_distance_miles": rules.max_distance_miles,
        },
    }
    if summary["rows_in"] != summary["rows_kept"] + summary["rows_rejected"]:  # pragma: no cover - invariant
        raise AssertionError(f"row accounting broken: {summary}")
    return kept, rejected, summary
