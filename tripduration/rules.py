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
    reason = np.select(masks, list(REASONS), default="")
    return pd.Series(np.where(reason == "", None, reason), index=trips.index, dtype="object")


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
    reasons = rejection_reasons(trips, month, rules, valid_location_ids, unreadable)
    rejected_mask = reasons.notna().to_numpy()
    kept = trips.loc[~rejected_mask].reset_index(drop=True)
    kept = kept.astype({"PULocationID": "int32", "DOLocationID": "int32"})
    rejected = trips.loc[rejected_mask].copy()
    rejected["reason"] = reasons[rejected_mask].astype("string")
    rejected = rejected.reset_index(drop=True)
    counts = rejected["reason"].value_counts()
    summary: dict[str, object] = {
        "month": format_month(month),
        "rows_in": len(trips),
        "rows_kept": len(kept),
        "rows_rejected": len(rejected),
        "rejected_by_reason": {r: int(counts.get(r, 0)) for r in REASONS},
        "rules": {
            "min_duration_min": rules.min_duration_min,
            "max_duration_min": rules.max_duration_min,
            "max_distance_miles": rules.max_distance_miles,
        },
    }
    if summary["rows_in"] != summary["rows_kept"] + summary["rows_rejected"]:  # pragma: no cover - invariant
        raise AssertionError(f"row accounting broken: {summary}")
    return kept, rejected, summary
