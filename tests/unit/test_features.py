"""The modelling table and the engineered features use only what is known when the trip is dispatched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tripduration.training.features import (
    ENGINEERED_COLUMNS,
    LEAKY_COLUMNS,
    MODEL_INPUT_COLUMNS,
    TARGET,
    engineer_features,
    engineered_feature_names,
    model_table,
    split_xy,
)

KEPT_ROW = {
    "pickup_datetime": "2021-01-04 08:30:00",  # a Monday
    "dropoff_datetime": "2021-01-04 08:45:30",
    "VendorID": 2,
    "RatecodeID": 1,
    "PULocationID": 74,
    "DOLocationID": 75,
    "passenger_count": 1,
    "trip_distance": 2.5,
    "trip_type": 1,
    "payment_type": 1,
    "fare_amount": 12.0,
    "tip_amount": 2.0,
    "total_amount": 14.8,
}


@pytest.fixture
def kept(make_trips) -> pd.DataFrame:
    rows = [
        KEPT_ROW,
        {**KEPT_ROW, "pickup_datetime": "2021-01-10 23:59:00", "dropoff_datetime": "2021-01-11 00:09:00"},
        {**KEPT_ROW, "RatecodeID": None, "passenger_count": None, "trip_type": None, "VendorID": None},
    ]
    frame = make_trips(rows)
    return frame.astype({"PULocationID": "int32", "DOLocationID": "int32"})


def test_model_table_has_inputs_and_target_only(kept):
    table = model_table(kept)
    assert list(table.columns) == [*MODEL_INPUT_COLUMNS, TARGET]
    assert not (set(table.columns) - {TARGET}) & LEAKY_COLUMNS
    assert table[TARGET].tolist() == [15.5, 10.0, 15.5]
    assert table[TARGET].dtype == np.dtype("float64")
    X, y = split_xy(table)
    assert list(X.columns) == list(MODEL_INPUT_COLUMNS)
    assert not set(X.columns) & LEAKY_COLUMNS
    assert y.name == TARGET


def test_model_table_drops_every_leaky_column_present_in_the_input(kept):
    for column in LEAKY_COLUMNS - set(kept.columns):
        kept[column] = 1.0
    table = model_table(kept)
    assert set(table.columns) & LEAKY_COLUMNS == {TARGET}


def test_model_table_names_missing_columns(kept):
    with pytest.raises(ValueError, match=r"lack columns \['trip_distance'\]"):
        model_table(kept.drop(columns=["trip_distance"]))
    with pytest.raises(ValueError, match="dropoff_datetime"):
        model_table(kept.drop(columns=["dropoff_datetime"]))


def test_model_inputs_and_engineered_columns_are_not_leaky():
    assert not set(MODEL_INPUT_COLUMNS) & LEAKY_COLUMNS
    assert not set(ENGINEERED_COLUMNS) & LEAKY_COLUMNS


def test_engineer_features_columns_and_values(kept):
    X, _ = split_xy(model_table(kept))
    features = engineer_features(X)

    assert list(features.columns) == list(ENGINEERED_COLUMNS)
    assert engineered_feature_names(None, None) == list(ENGINEERED_COLUMNS)
    assert features.index.equals(X.index)
    assert features["pair_code"].tolist() == [74075, 74075, 74075]
    assert features["pickup_hour"].tolist() == [8, 23, 8]
    assert features["pickup_weekday"].tolist() == [0, 6, 0]
    assert features["pickup_minute_of_week"].tolist() == [8 * 60 + 30, 6 * 1440 + 23 * 60 + 59, 8 * 60 + 30]
    assert features["log_distance"].tolist() == pytest.approx([np.log1p(2.5)] * 3)
    for column in ("VendorID", "RatecodeID", "trip_type", "passenger_count"):
        assert features[column].dtype == np.dtype("float64")
    # missing optional codes become -1
    assert features.loc[2, ["VendorID", "RatecodeID", "trip_type", "passenger_count"]].tolist() == [-1.0] * 4
    assert features.loc[0, ["VendorID", "RatecodeID", "trip_type", "passenger_count"]].tolist() == [2.0, 1.0, 1.0, 1.0]
    assert not features.isna().any().any()


def test_engineer_features_clips_negative_distance_and_accepts_plain_dtypes():
    X = pd.DataFrame(
        {
            "pickup_datetime": ["2021-01-02 00:05:00", "2021-01-02 13:00:00"],
            "PULocationID": [1, 265],
            "DOLocationID": [265, 1],
            "trip_distance": [-3.0, 0.0],
            "VendorID": [1, np.nan],
            "RatecodeID": [np.nan, 2],
            "trip_type": [1, 2],
            "passenger_count": [0, 6],
        },
        index=[5, 9],
    )
    features = engineer_features(X)
    assert features.index.tolist() == [5, 9]
    assert features["trip_distance"].tolist() == [0.0, 0.0]
    assert features["log_distance"].tolist() == [0.0, 0.0]
    assert features["pair_code"].tolist() == [1265, 265001]
    assert features["VendorID"].tolist() == [1.0, -1.0]
    assert features["RatecodeID"].tolist() == [-1.0, 2.0]
    assert features["pickup_weekday"].tolist() == [5, 5]  # a Saturday


def test_engineer_features_ignores_extra_columns(kept):
    X, _ = split_xy(model_table(kept))
    plain = engineer_features(X)
    noisy = X.assign(fare_amount=[1.0, 2.0, 3.0], dropoff_datetime=kept["dropoff_datetime"])
    noisy = noisy[list(noisy.columns[::-1])]  # position must not matter either
    pd.testing.assert_frame_equal(engineer_features(noisy), plain)


def test_engineer_features_names_missing_input_columns(kept):
    X, _ = split_xy(model_table(kept))
    with pytest.raises(ValueError, match=r"lacks columns \['RatecodeID'\]"):
        engineer_features(X.drop(columns=["RatecodeID"]))
