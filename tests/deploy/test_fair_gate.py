"""The quality gate compares on a month neither model was fitted on (issue 15.1), on real 2021 rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import DATA

from tests.metadata import metadata_for
from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.evaluation.metrics import regression_metrics
from tripduration.registry.registration import register_with_gate
from tripduration.registry.store import ModelRegistry
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """3,000 real trips of each embedded month, as modelling tables."""
    out = {}
    for i, month in enumerate(("2021-01", "2021-02", "2021-03")):
        kept, _, _ = validate_trip_file(DATA / f"green_tripdata_{month}.parquet", dt.date(2021, i + 1, 1), Rules())
        out[month] = model_table(kept).sample(n=3000, random_state=i).reset_index(drop=True)
    return out


def lineage(train: list[str], validation: str, test: str) -> list[dict]:
    return [
        *({"role": "train", "month": m} for m in train),
        {"role": "validation", "month": validation},
        {"role": "test", "month": test},
    ]


def rmse(model, table: pd.DataFrame) -> float:
    X, y = split_xy(table)
    return regression_metrics(y, model.predict(X))["rmse"]


def describe(tmp_path: Path, name: str, model, baseline, test: pd.DataFrame, data: list[dict]) -> tuple[Path, dict]:
    path = tmp_path / f"{name}.joblib"
    joblib.dump(model, path)
    cand, base = rmse(model, test), rmse(baseline, test)
    metrics = {"test": {"rmse": cand, "rmse_ratio_to_baseline": cand / base}, "baseline_test": {"rmse": base}}
    return path, metadata_for(metrics, data, algorithm=name)


def fit(name: str, *frames: pd.DataFrame):
    return build_pipeline(CANDIDATES[name]).fit(*split_xy(pd.concat(frames, ignore_index=True)))


@pytest.fixture
def production(tmp_path, tables) -> ModelRegistry:
    """v0001 in production: refit on 2021-01 + 2021-02 (train + validation), tested on 2021-03."""
    registry = ModelRegistry(tmp_path / "models", "green-trip-duration")
    model = fit("ridge_a1", tables["2021-01"], tables["2021-02"])
    baseline = fit("baseline_linreg", tables["2021-01"], tables["2021-02"])
    path, meta = describe(
        tmp_path, "v1", model, baseline, tables["2021-03"], lineage(["2021-01"], "2021-02", "2021-03")
    )
    report = tmp_path / "report"
    report.mkdir()
    result = register_with_gate(registry, path, report, meta, tables["2021-03"], key="v1")
    assert result["gate"]["promote"] and result["gate"]["rule"] == "no_production"
    return registry


def test_candidate_tested_on_a_month_production_was_fitted_on_is_not_compared_there(tmp_path, tables, production):
    # a challenger trained on 2021-03, validated on 2021-01, tested on 2021-02: v0001 was refit on 2021-02, so
    # its RMSE there is a training error; the gate must not use it
    model = fit("ridge_a1", tables["2021-03"], tables["2021-01"])
    baseline = fit("baseline_linreg", tables["2021-03"], tables["2021-01"])
    data = lineage(["2021-03"], "2021-01", "2021-02")
    path, meta = describe(tmp_path, "v2", model, baseline, tables["2021-02"], data)
    result = register_with_gate(production, path, tmp_path / "report", meta, tables["2021-02"], key="v2")
    gate = result["gate"]
    assert gate["rule"] == "recorded_ratio"
    assert gate["production_rmse_on_test_month"] is None and gate["compared_on_month"] is None
    assert gate["reason"].startswith("cannot compare with production v0001 on 2021-02: v0001 was fitted on it")
    assert "train 2021-01; validation 2021-02" in gate["reason"]
    assert gate["production_months"] == {"train": ["2021-01"], "validation": ["2021-02"], "test": ["2021-03"]}
    assert gate["candidate_months"] == {"train": ["2021-03"], "validation": ["2021-01"], "test": ["2021-02"]}
    own = production.metadata("v0001")["metrics"]["test"]["rmse_ratio_to_baseline"]
    ratio = meta.metrics["test"]["rmse_ratio_to_baseline"]
    assert gate["promote"] == (ratio < own)
    assert f"{ratio:.4f} vs {own:.4f}" in gate["reason"]
    # the training error the old gate compared with is lower than v0001's real test RMSE: it was unfair
    v1, _ = production.load_model("v0001")
    assert rmse(v1, tables["2021-02"]) < production.metadata("v0001")["metrics"]["test"]["rmse"]


def test_recorded_ratio_rule_rejects_a_candidate_that_does_not_beat_productions_ratio(tmp_path, tables, production):
    model = fit("ridge_a10", tables["2021-03"], tables["2021-01"])
    baseline = fit("baseline_linreg", tables["2021-03"], tables["2021-01"])
    path, meta = describe(
        tmp_path, "v2", model, baseline, tables["2021-02"], lineage(["2021-03"], "2021-01", "2021-02")
    )
    own = production.metadata("v0001")["metrics"]["test"]["rmse_ratio_to_baseline"]
    # a candidate that beats its baseline, but by less than v0001 beat its own on a month it never saw
    meta.metrics["baseline_test"]["rmse"] = meta.metrics["test"]["rmse"] / min(0.999, own + 0.01)
    result = register_with_gate(production, path, tmp_path / "report", meta, tables["2021-02"], key="v2")
    assert result["gate"]["rule"] == "recorded_ratio" and result["gate"]["promote"] is False
    assert result["gate"]["reason"].endswith("not promoted")
    assert production.production()["version"] == "v0001"


def test_candidate_tested_on_a_month_production_never_fitted_on_is_compared_there(tmp_path, tables, production):
    # 2021-03 is v0001's test month, not a month it was fitted on: both are scored on it (another candidate than
    # v0001's: the same one on the same months would be byte-identical, and the registry registers that only once)
    model = fit("ridge_a10", tables["2021-01"], tables["2021-02"])
    baseline = fit("baseline_linreg", tables["2021-01"], tables["2021-02"])
    data = lineage(["2021-01"], "2021-02", "2021-03")
    path, meta = describe(tmp_path, "v2", model, baseline, tables["2021-03"], data)
    result = register_with_gate(production, path, tmp_path / "report", meta, tables["2021-03"], key="v2")
    gate = result["gate"]
    assert gate["rule"] == "same_month" and gate["compared_on_month"] == "2021-03"
    v1, _ = production.load_model("v0001")
    assert gate["production_rmse_on_test_month"] == pytest.approx(rmse(v1, tables["2021-03"]))
    assert gate["promote"] == (meta.metrics["test"]["rmse"] < gate["production_rmse_on_test_month"])
    assert np.isfinite(gate["production_rmse_on_test_month"])
