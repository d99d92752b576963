"""Monitoring on real rows: drift on a shifted month, none on a resample, degradation past the threshold."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from conftest import DATA

from tripduration.candidates import CANDIDATES, build_pipeline
from tripduration.features import model_table, split_xy
from tripduration.monitoring import Thresholds, build_profile, monitor_month, psi
from tripduration.nodes import validate_trip_file
from tripduration.rules import Rules

THRESHOLDS = Thresholds(psi_drift=0.2, prediction_psi_drift=0.2, rmse_degraded_ratio=1.25)


@pytest.fixture(scope="module")
def trained():
    kept, _, _ = validate_trip_file(DATA / "green_tripdata_2021-01.parquet", dt.date(2021, 1, 1), Rules())
    table = model_table(kept).sample(n=20000, random_state=0).reset_index(drop=True)
    train, holdout = table.iloc[:15000].reset_index(drop=True), table.iloc[15000:].reset_index(drop=True)
    model = build_pipeline(CANDIDATES["ridge_a1"]).fit(*split_xy(train))
    X, y = split_xy(holdout)
    test_rmse = float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))
    profile = build_profile(train, model.predict(split_xy(train)[0]), 0.035, {"rmse": test_rmse})
    return model, profile, train, holdout


def test_psi_is_zero_for_identical_and_large_for_disjoint_distributions():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([1.0, 0.0], [0.0, 1.0]) > 5


def test_resample_of_the_training_month_is_ok(trained):
    model, profile, train, _ = trained
    resample = train.sample(frac=1.0, replace=True, random_state=3).reset_index(drop=True)
    report = monitor_month(model, profile, resample, 0.035, THRESHOLDS)
    assert report["verdict"] == "ok", report["reasons"]
    assert max(report["drift"]["feature_psi"].values()) < 0.05


def test_shifted_distribution_is_flagged_as_drift(trained):
    model, profile, _, holdout = trained
    shifted = holdout.copy()
    # all trips at night and from one borough's zones: inputs change, durations stay plausible
    shifted["pickup_datetime"] = shifted["pickup_datetime"].dt.normalize() + pd.Timedelta(hours=2)
    shifted["PULocationID"] = np.where(shifted.index % 2 == 0, 74, 75).astype("int32")
    report = monitor_month(model, profile, shifted, 0.035, THRESHOLDS)
    assert report["verdict"] in ("drift", "degraded")
    assert report["drift"]["feature_psi"]["pickup_hour"] > 0.2
    assert report["drift"]["feature_psi"]["PULocationID"] > 0.2
    assert any("pickup_hour" in r for r in report["reasons"])


def test_growing_error_is_flagged_as_degraded(trained):
    model, profile, _, holdout = trained
    ok = monitor_month(model, profile, holdout, 0.035, THRESHOLDS)
    assert ok["verdict"] == "ok" and ok["accuracy"]["rmse_ratio_to_test"] == pytest.approx(1.0)
    slower = holdout.copy()
    slower["duration_min"] = slower["duration_min"] * 1.6  # the city got slower: same inputs, longer trips
    report = monitor_month(model, profile, slower, 0.035, THRESHOLDS)
    assert report["verdict"] == "degraded"
    assert report["accuracy"]["rmse_ratio_to_test"] > 1.25
    assert "RMSE is" in report["reasons"][0]


def test_rejected_and_missing_shares_are_reported(trained):
    model, profile, _, holdout = trained
    report = monitor_month(model, profile, holdout, 0.20, THRESHOLDS)
    assert report["rejected_share"] == {"reference": 0.035, "current": 0.20}
    assert set(report["missing_share"]) >= {"RatecodeID", "passenger_count"}


def test_zero_rows_are_refused_with_a_clear_message(trained):
    model, profile, _, holdout = trained
    with pytest.raises(ValueError, match="no kept trips"):
        monitor_month(model, profile, holdout.iloc[:0], 0.0, THRESHOLDS)
