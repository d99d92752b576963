"""Rejection reasons as names, per row: the readable form of ``tripduration.data.rules.reason_codes`` for tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import numpy as np
import pandas as pd

from tripduration.data.rules import REASONS, Rules, reason_codes


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
