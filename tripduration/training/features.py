"""Features known when a trip is dispatched, and the target.

The model's input is a frame of canonical trip columns (:data:`MODEL_INPUT_COLUMNS`); everything derived
from them (hour, weekday, zone pair) is computed inside the saved scikit-learn Pipeline by
:func:`engineer_features`, so the service and batch prediction feed the model exactly what training did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tripduration.data.rules import duration_minutes

TARGET = "duration_min"

#: canonical columns the model may see: all known when the trip is dispatched
MODEL_INPUT_COLUMNS: tuple[str, ...] = (
    "pickup_datetime",
    "PULocationID",
    "DOLocationID",
    "trip_distance",
    "VendorID",
    "RatecodeID",
    "trip_type",
    "passenger_count",
)

#: columns only known once the trip is over (or derived from them): using any of them is leakage
LEAKY_COLUMNS: frozenset[str] = frozenset(
    {
        "dropoff_datetime",
        "lpep_dropoff_datetime",
        "tpep_dropoff_datetime",
        "fare_amount",
        "tip_amount",
        "tolls_amount",
        "total_amount",
        "extra",
        "mta_tax",
        "improvement_surcharge",
        "congestion_surcharge",
        "airport_fee",
        "ehail_fee",
        "payment_type",
        TARGET,
    }
)

#: the engineered columns, in order
ENGINEERED_COLUMNS: tuple[str, ...] = (
    "PULocationID",
    "DOLocationID",
    "pair_code",
    "trip_distance",
    "log_distance",
    "pickup_hour",
    "pickup_weekday",
    "pickup_minute_of_week",
    "VendorID",
    "RatecodeID",
    "trip_type",
    "passenger_count",
)


#: the columns of validated trips a modelling table is made from
MODEL_TABLE_SOURCE_COLUMNS: tuple[str, ...] = (*MODEL_INPUT_COLUMNS, "dropoff_datetime")


def model_table(trips: pd.DataFrame) -> pd.DataFrame:
    """The modelling table of a month: model inputs plus the target, from validated (kept) trips."""
    missing = [c for c in MODEL_TABLE_SOURCE_COLUMNS if c not in trips.columns]
    if missing:
        raise ValueError(f"validated trips lack columns {missing}; rerun the validation step")
    # a new frame over the same column arrays (no copy of the month); the target is a new column of it only
    table = pd.DataFrame({c: trips[c] for c in MODEL_INPUT_COLUMNS}, copy=False)
    table[TARGET] = duration_minutes(trips["pickup_datetime"], trips["dropoff_datetime"]).astype("float64")
    return table


def split_xy(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return table.loc[:, list(MODEL_INPUT_COLUMNS)], table[TARGET]


def engineer_features(X: pd.DataFrame) -> pd.DataFrame:
    """Derive the model's features from canonical trip columns (used inside the sklearn Pipeline).

    Missing optional codes (RatecodeID, trip_type, passenger_count, VendorID) become -1: in TLC data the
    missingness itself marks the record source (dispatch-app trips report none of them).
    """
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in X.columns]
    if missing:
        raise ValueError(
            f"model input lacks columns {missing}; pass canonical trip columns {list(MODEL_INPUT_COLUMNS)}"
        )
    pickup = pd.to_datetime(X["pickup_datetime"])
    pu = pd.to_numeric(X["PULocationID"]).astype("int32").to_numpy()
    do = pd.to_numeric(X["DOLocationID"]).astype("int32").to_numpy()
    distance = pd.to_numeric(X["trip_distance"]).astype("float64").clip(lower=0).to_numpy()
    hour = pickup.dt.hour.to_numpy(dtype="int16")
    weekday = pickup.dt.dayofweek.to_numpy(dtype="int16")
    out = {
        "PULocationID": pu,
        "DOLocationID": do,
        "pair_code": pu.astype("int64") * 1000 + do,
        "trip_distance": distance,
        "log_distance": np.log1p(distance),
        "pickup_hour": hour,
        "pickup_weekday": weekday,
        "pickup_minute_of_week": weekday.astype("int32") * 1440
        + hour.astype("int32") * 60
        + pickup.dt.minute.to_numpy(dtype="int32"),
    }
    for col in ("VendorID", "RatecodeID", "trip_type", "passenger_count"):
        out[col] = pd.to_numeric(X[col]).astype("Float64").fillna(-1).to_numpy(dtype="float64")
    return pd.DataFrame(out, index=X.index, columns=list(ENGINEERED_COLUMNS))


def engineered_feature_names(_transformer: object, _input_features: object) -> list[str]:
    return list(ENGINEERED_COLUMNS)
