"""Batch predictions of a month, as a dispatch-time job would make them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.data.rules import OUTCOME_REASONS, scorable_rejections
from tripduration.runtime.progress import Progress, no_progress
from tripduration.training.features import MODEL_INPUT_COLUMNS

#: the trip columns a batch-prediction output carries to identify each trip
PREDICTION_KEY_COLUMNS: tuple[str, ...] = (
    "pickup_datetime",
    "dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "trip_distance",
)


#: the only columns of a month's kept trips that batch prediction reads
BATCH_INPUT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((*PREDICTION_KEY_COLUMNS, *MODEL_INPUT_COLUMNS)))


def batch_predictions(
    model: Pipeline,
    kept: pd.DataFrame,
    model_name: str,
    model_version: str,
    chunk_rows: int = 250_000,
    clip: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Predicted minutes for every trip of ``kept``, with the trip's key columns and the model version.

    Predicts ``chunk_rows`` trips at a time: the model's intermediate frames (engineered features, float64
    arrays) then take the memory of one chunk, not of the month. ``model_name`` and ``model_version`` are
    categorical columns (one value each). With ``clip=(low, high)`` predictions are clipped to that
    plausible range and a boolean ``clipped`` column marks the rows that were.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows!r}")
    n = len(kept)
    predicted = np.empty(n, dtype="float64")
    inputs = list(MODEL_INPUT_COLUMNS)
    for start in range(0, n, chunk_rows):
        predicted[start : start + chunk_rows] = model.predict(kept.iloc[start : start + chunk_rows][inputs])
    out = kept.loc[:, list(PREDICTION_KEY_COLUMNS)].copy()
    out.insert(0, "trip_row", np.arange(n, dtype="int64"))
    if clip is not None:
        low, high = clip
        out["clipped"] = (predicted < low) | (predicted > high)
        predicted = np.clip(predicted, low, high)
    out["predicted_duration_min"] = predicted
    codes = np.zeros(n, dtype="int8")
    out["model_name"] = pd.Categorical.from_codes(codes, categories=[model_name])
    out["model_version"] = pd.Categorical.from_codes(codes, categories=[model_version])
    return out


def dispatchable_trips(kept: pd.DataFrame, rejected: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every trip a batch job could score at dispatch time: the kept ones and those rejected only for their
    outcome (dropoff, duration; see :data:`tripduration.data.rules.OUTCOME_REASONS`), with ``source`` (kept /
    rejected), ``source_row`` (row in that file) and ``outcome_rejected`` (the outcome reason, or null).

    Also returns what could not be scored and why (counts per dispatch-time reason).
    """
    scorable = scorable_rejections(rejected["reason"])
    extra = rejected.loc[scorable].copy()
    for col in ("PULocationID", "DOLocationID"):  # present: the dispatch rules passed
        extra[col] = extra[col].astype("int32")
    columns = list(kept.columns)
    trips = pd.concat([kept, extra.loc[:, columns]], ignore_index=True) if len(extra) else kept.copy()
    # categorical columns from int8 codes: one byte per trip, not a Python string per trip
    source_codes = np.repeat(np.array([0, 1], dtype="int8"), [len(kept), len(extra)])
    trips["source"] = pd.Categorical.from_codes(source_codes, categories=["kept", "rejected"])
    trips["source_row"] = np.concatenate([np.arange(len(kept)), np.flatnonzero(scorable)]).astype("int64")
    outcome_codes = np.full(len(trips), -1, dtype="int8")
    outcome_codes[len(kept) :] = pd.Categorical(extra["reason"].astype(str), categories=list(OUTCOME_REASONS)).codes
    trips["outcome_rejected"] = pd.Categorical.from_codes(outcome_codes, categories=list(OUTCOME_REASONS))
    not_scored = rejected.loc[~scorable, "reason"].astype("string").value_counts()
    by_outcome = extra["reason"].astype("string").value_counts()
    facts = {
        "rows_in": len(kept) + len(rejected),
        "scored": len(trips),
        "scored_with_valid_outcome": len(kept),
        "scored_outcome_rejected": {str(k): int(v) for k, v in by_outcome.items()},
        "not_scored": int((~scorable).sum()),
        "not_scored_by_reason": {str(k): int(v) for k, v in not_scored.items()},
    }
    return trips, facts


def score_dispatchable(
    model: Pipeline,
    kept: pd.DataFrame,
    rejected: pd.DataFrame,
    model_name: str,
    model_version: str,
    plausible: tuple[float, float],
    chunk_rows: int = 250_000,
    progress: Progress = no_progress,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Batch predictions of a month as a dispatch-time job would make them (issue 11.3).

    Scores every trip whose dispatch-time fields are valid (:func:`dispatchable_trips`), clips predictions
    to the ``plausible`` (min, max) minutes of ``[validation]`` and returns them with a summary: rows scored
    (with a valid outcome or rejected only for it), rows not scored per reason, and predictions clipped.
    """
    trips, facts = dispatchable_trips(kept, rejected)
    progress(f"predicting {len(trips)} dispatchable trips with {model_version}", 30)
    low, high = plausible
    raw_low = raw_high = 0
    out = batch_predictions(model, trips, model_name, model_version, chunk_rows, clip=plausible)
    if len(out):
        at_low, at_high = out["predicted_duration_min"] == low, out["predicted_duration_min"] == high
        raw_low, raw_high = int((out["clipped"] & at_low).sum()), int((out["clipped"] & at_high).sum())
    out["trip_row"] = trips["source_row"].to_numpy(dtype="int64")
    out.insert(1, "source", trips["source"].array)
    out["outcome_rejected"] = trips["outcome_rejected"].array
    facts["clipped"] = {"to_min": raw_low, "to_max": raw_high, "range_min": [low, high]}
    facts.update({"model_name": model_name, "model_version": model_version})
    progress(f"{facts['scored']} predictions, {facts['not_scored']} trips not scorable", 100)
    return out, facts
