"""Row-level validation rules: split canonical trips into kept and rejected rows, never losing one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tripduration.data.months import add_months, format_month

#: rules on what is known when a trip is dispatched (pickup time and place, destination, distance): a row
#: that breaks one cannot be scored by a batch job either. ``invalid_value``: a value of a dispatch-time
#: column (not in :data:`OUTCOME_COLUMNS`) that the reader could not read as its type.
DISPATCH_REASONS: tuple[str, ...] = (
    "invalid_pickup_datetime",
    "pickup_outside_month",
    "missing_location",
    "unknown_location",
    "invalid_distance",
    "negative_distance",
    "absurd_distance",
    "invalid_value",
)
#: rules on the outcome (dropoff time, duration): they decide what trains and what is evaluated, not what
#: can be scored. They are tested after every dispatch rule, so a row rejected for one of them passed all
#: dispatch rules and is scorable (see :func:`scorable_rejections`).
OUTCOME_REASONS: tuple[str, ...] = (
    "invalid_dropoff_datetime",
    "duration_out_of_range",
    "invalid_outcome_value",
)
#: canonical columns only known once the trip is over: an unreadable value there (``invalid_outcome_value``)
#: keeps the row out of training and evaluation, not out of scoring
OUTCOME_COLUMNS: frozenset[str] = frozenset(
    {"dropoff_datetime", "fare_amount", "tip_amount", "total_amount", "payment_type"}
)
#: rejection reasons in the order they are tested; a row gets the first reason that applies
REASONS: tuple[str, ...] = (*DISPATCH_REASONS, *OUTCOME_REASONS)


@dataclass(frozen=True)
class Rules:
    """Thresholds of the rules (set from ``[validation]`` in luigi.cfg)."""

    min_duration_min: float = 1.0
    max_duration_min: float = 60.0
    max_distance_miles: float = 100.0


def duration_minutes(pickup: pd.Series, dropoff: pd.Series) -> pd.Series:
    """Trip duration in minutes (float); NaN where either timestamp is missing."""
    return (dropoff - pickup).dt.total_seconds() / 60.0


def _mask(rows: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)


def reason_codes(
    trips: pd.DataFrame,
    month: dt.date,
    rules: Rules,
    valid_location_ids: Collection[int] | None = None,
    unreadable: np.ndarray | None = None,
    unreadable_outcome: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, 0 if it is kept, else 1 + the index in :data:`REASONS` of the first rule it breaks (int8).

    One byte per row, no Python string per row (tests read it as names: ``tests/unit/reasons.py``). Dispatch
    rules are tested before outcome rules (see :data:`DISPATCH_REASONS`).
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
    by_reason = {
        "invalid_pickup_datetime": pickup.isna(),
        "pickup_outside_month": (pickup < start) | (pickup >= end),
        "missing_location": pu.isna() | do.isna(),
        "unknown_location": unknown,
        "invalid_distance": distance.isna(),
        "negative_distance": distance < 0,
        "absurd_distance": ~np.isfinite(distance) | (distance > rules.max_distance_miles),
        "invalid_value": _mask(unreadable, len(trips)),
        "invalid_dropoff_datetime": dropoff.isna(),
        "duration_out_of_range": ~duration.between(rules.min_duration_min, rules.max_duration_min),
        "invalid_outcome_value": _mask(unreadable_outcome, len(trips)),
    }
    conditions = [by_reason[reason] for reason in REASONS]
    masks = [np.asarray(pd.Series(c, index=trips.index).fillna(False), dtype=bool) for c in conditions]
    codes = [np.int8(i) for i in range(1, len(REASONS) + 1)]
    return np.select(masks, codes, default=np.int8(0)).astype("int8", copy=False)


def split_trips(
    trips: pd.DataFrame,
    month: dt.date,
    rules: Rules,
    valid_location_ids: Collection[int] | None = None,
    unreadable: np.ndarray | None = None,
    unreadable_outcome: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Split ``trips`` into (kept, rejected-with-``reason``, summary).

    ``rows_in == rows_kept + rows_rejected`` always holds; the summary counts rows per reason.
    Kept location IDs are cast to non-null int32 because the rules guarantee they are present.
    """
    codes = reason_codes(trips, month, rules, valid_location_ids, unreadable, unreadable_outcome)
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
    if len(trips) != len(kept) + len(rejected):  # pragma: no cover - invariant
        raise AssertionError(f"row accounting broken: {summary}")
    return kept, rejected, summary


def scorable_rejections(reasons: pd.Series) -> np.ndarray:
    """True for rejected rows whose only fault is the outcome (dropoff, duration): a batch job at dispatch
    time would have scored them. Works because outcome rules are tested after every dispatch rule."""
    return np.asarray(reasons.astype("string").isin(OUTCOME_REASONS).fillna(False), dtype=bool)
