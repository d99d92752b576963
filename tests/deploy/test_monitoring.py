"""Monitoring on real rows: drift on a shifted month, none on a resample, degradation past the threshold."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, ROOT

from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.monitoring.drift import build_profile, monitor_month, psi
from tripduration.monitoring.policy import RetrainPolicy, Thresholds, retrain_decision
from tripduration.monitoring.report import drift_plot_lines, render_monitoring_html
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy

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


# --------------------------------------------------------------------------- issue 11.4 / 15.6
def test_missingness_change_alone_is_reported_apart_and_is_not_drift(trained):
    # 2022 on: the TLC files fill passenger_count / RatecodeID / trip_type that 2021 often left empty
    model, profile, _, holdout = trained
    filled = holdout.copy()
    for col in ("passenger_count", "RatecodeID", "trip_type"):
        filled[col] = filled[col].fillna(filled[col].mode().iloc[0])
    assert profile["missing_share"]["passenger_count"] > 0.1
    report = monitor_month(model, profile, filled, 0.035, THRESHOLDS)
    assert report["verdict"] == "ok", report["reasons"]
    assert set(report["missingness"]["changed"]) >= {"passenger_count", "RatecodeID"}
    change = report["missing_share"]["passenger_count"]
    assert change["current"] == 0 and change["change"] == pytest.approx(-change["reference"])
    assert all(report["drift"]["feature_psi"][c] < 0.2 for c in ("passenger_count", "RatecodeID", "trip_type"))
    decision = retrain_decision(report, {"trip_distance": 3.0, "passenger_count": 0.5}, RetrainPolicy())
    assert decision["retrain"] is False and "missingness changed (reported, not a retrain rule)" in decision["reason"]
    opted_in = retrain_decision(report, None, RetrainPolicy(("missingness",)))
    assert opted_in["rule"] == "missingness" and "passenger_count missing" in opted_in["reason"]


def test_drift_retrains_only_on_features_the_model_depends_on(trained):
    model, profile, _, holdout = trained
    shifted = holdout.copy()
    shifted["pickup_datetime"] = shifted["pickup_datetime"].dt.normalize() + pd.Timedelta(hours=2)
    report = monitor_month(model, profile, shifted, 0.035, THRESHOLDS)
    assert report["drift"]["feature_psi"]["pickup_hour"] > 0.2
    unimportant = {"trip_distance": 5.0, "pickup_datetime": 0.01, "PULocationID": 1.0}
    kept = retrain_decision(report, unimportant, RetrainPolicy())
    if report["verdict"] != "degraded":
        assert (
            kept["retrain"] is False
            and "pickup_hour PSI" in kept["reason"]
            and "importance share 0.00" in kept["reason"]
        )
    important = {"trip_distance": 1.0, "pickup_datetime": 1.0}
    fired = retrain_decision(report, important, RetrainPolicy(("drift_important",)))
    assert fired["retrain"] and fired["rule"] == "drift_important"
    assert fired["reason"].startswith("rule drift_important fired: pickup_hour PSI")
    with pytest.raises(ValueError, match=r"unknown rule\(s\) 'drift_everything'; use a comma-separated subset of"):
        RetrainPolicy(("degraded", "drift_everything"))


def test_one_default_for_the_thresholds_in_code_config_class_and_luigi_cfg():
    import configparser

    from tasks.settings import MonitoringConfig

    defaults = Thresholds()
    assert defaults.psi_drift == 0.2  # the documented value, also in luigi.cfg (was 0.25 here)
    params = dict(MonitoringConfig.get_params())
    for name in ("psi_drift", "prediction_psi_drift", "rmse_degraded_ratio", "missing_share_change"):
        assert params[name]._default == getattr(defaults, name), name
    assert params["retrain_on"]._default == "degraded, drift_important"
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "luigi.cfg")
    for key, value in cfg["monitoring"].items():
        if hasattr(defaults, key):
            assert float(value) == getattr(defaults, key), f"luigi.cfg [monitoring] {key} = {value} disagrees"


def test_monitoring_report_prints_no_none_and_draws_the_verdicts_threshold(trained, tmp_path):
    model, profile, _, holdout = trained
    test_metrics = {"rmse": profile["test_metrics"]["rmse"], "mae": 3.1, "r2": 0.71, "rows": 5000}
    custom = Thresholds(psi_drift=0.33, prediction_psi_drift=0.4, rmse_degraded_ratio=1.25)
    report = monitor_month(model, profile, holdout, 0.035, custom, test_metrics)
    report.update(
        {"month": "2021-04", "model": {"name": "green-trip-duration", "version": "v0001", "test_month": "2021-03"}}
    )
    render_monitoring_html(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "None" not in page
    assert "3.1000" in page and "0.7100" in page and ">5000<" in page  # the model's own test metrics
    assert drift_plot_lines(report) == [
        (0.33, "0.33 drift threshold (verdict)"),
        (0.4, "0.4 prediction drift threshold (verdict)"),
    ]
    assert "0.3300 / 0.4000 / 1.2500" in page
