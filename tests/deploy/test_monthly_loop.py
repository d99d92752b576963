"""Batch predictions, the monthly MLOps loop and the model-history commands, on the real graph."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import BatchPredictions, MonitoringReport, MonthlyRun, TrainingPipeline, ValidatedTrips
from tasks.settings import MonitoringConfig
from tests.events import loop_events
from tripduration.data.rules import OUTCOME_REASONS
from tripduration.monitoring.policy import Thresholds
from tripduration.registry.store import ModelRegistry
from tripduration.training.features import MODEL_INPUT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
MARCH, APRIL = dt.date(2021, 3, 1), dt.date(2021, 4, 1)


def registry(env) -> ModelRegistry:
    return ModelRegistry(env.registry_dir, "green-trip-duration")


def test_batch_predictions_score_every_dispatchable_trip_and_carry_the_version(pipeline_env, run_tasks):
    # issue 11.3: kept trips AND trips rejected only for their outcome are scored; the rest are counted
    assert run_tasks([TrainingPipeline()]).ok
    task = BatchPredictions(month=MARCH)
    assert run_tasks([task]).ok
    predictions = pd.read_parquet(task.output().path)
    validated = ValidatedTrips(month=MARCH).output()
    kept = pd.read_parquet(validated["kept.parquet"].path)
    rejected = pd.read_parquet(validated["rejected.parquet"].path)
    outcome_only = rejected["reason"].isin(OUTCOME_REASONS)
    model, meta = registry(pipeline_env).load_model()
    assert outcome_only.sum() > 0
    assert len(predictions) == len(kept) + outcome_only.sum()
    from_kept = predictions[predictions["source"] == "kept"]
    expected = np.clip(model.predict(kept[list(MODEL_INPUT_COLUMNS)]), 1.0, 60.0)
    np.testing.assert_allclose(from_kept["predicted_duration_min"], expected)
    from_rejected = predictions[predictions["source"] == "rejected"]
    assert from_rejected["trip_row"].tolist() == np.flatnonzero(outcome_only).tolist()
    assert from_rejected["outcome_rejected"].astype(str).tolist() == rejected.loc[outcome_only, "reason"].tolist()
    assert predictions["predicted_duration_min"].between(1.0, 60.0).all()
    assert set(predictions["model_version"]) == {meta["version"]} == {"v0001"}
    assert set(predictions["model_name"]) == {"green-trip-duration"}
    assert {"trip_row", "pickup_datetime", "PULocationID", "DOLocationID", "clipped"} <= set(predictions.columns)
    assert "-v0001" in task.output().path
    scoring = json.loads(Path(task.scoring_target().path).read_text())
    summary = json.loads(Path(validated["summary.json"].path).read_text())
    assert scoring["scored"] == len(predictions) and scoring["rows_in"] == summary["rows_in"]
    dispatch = {r: n for r, n in summary["rejected_by_reason"].items() if n and r not in OUTCOME_REASONS}
    assert scoring["not_scored_by_reason"] == dispatch and scoring["not_scored"] == sum(dispatch.values())
    assert scoring["clipped"]["to_min"] + scoring["clipped"]["to_max"] == int(predictions["clipped"].sum())
    assert scoring["clipped"]["range_min"] == [1.0, 60.0]


@pytest.mark.slow
def test_batch_predictions_follow_the_production_pointer(pipeline_env, run_tasks):
    assert run_tasks([TrainingPipeline()]).ok
    assert run_tasks([TrainingPipeline(test_month=APRIL)]).ok  # registers v0002 (a challenger)
    reg = registry(pipeline_env)
    assert reg.production()["version"] == "v0001"
    first = BatchPredictions(month=MARCH)
    assert run_tasks([first]).ok
    first_path = first.output().path
    reg.rollback("v0002", "test: serve v0002", force=True)  # v0002 may have been rejected by the gate
    moved = BatchPredictions(month=MARCH)
    assert moved.output().path != first_path and not moved.complete()
    assert run_tasks([moved]).ok
    assert set(pd.read_parquet(moved.output().path)["model_version"]) == {"v0002"}
    pinned = BatchPredictions(month=MARCH, model_version="v0001")
    assert pinned.output().path.endswith("-v0001/predictions.parquet")


@pytest.mark.slow
def test_monthly_loop_records_own_months_as_not_monitored_and_monitors_a_later_one(pipeline_env, run_tasks, config):
    # issue 11.1: v0001 trained on 2021-01, validated on 2021-02 and tested on 2021-03: monitoring it on those
    # months would be no test (RMSE ratio 1.000 on its own test month); 2021-04 is a month it never saw
    config.set("monitoring", "rmse_degraded_ratio", "10")  # sampled months: keep the verdicts deterministic
    config.set("monitoring", "psi_drift", "10")
    config.set("monitoring", "prediction_psi_drift", "10")
    assert run_tasks([TrainingPipeline()]).ok
    for month in (dt.date(2021, 2, 1), MARCH):
        result = run_tasks([MonthlyRun(month=month)])
        assert result.ok, result
        assert result.families() == {"BatchPredictions", "MonthlyRun"}  # no MonitoringReport
        run = json.loads(Path(MonthlyRun(month=month).output().path).read_text())
        assert run["verdict"] == "not monitored" and run["retrained"] is False
        assert run["decision"] == "not monitored: month used in training/test of v0001"
    result = run_tasks([MonthlyRun(month=APRIL)])
    assert result.ok, result
    assert {"BatchPredictions", "MonitoringReport", "MonthlyRun"} <= result.families()
    run = json.loads(Path(MonthlyRun(month=APRIL).output().path).read_text())
    assert run["verdict"] == "ok" and run["retrained"] is False and run["why_not_retrained"]
    assert run["monitored_version"] == "v0001" and run["decision"] == "ok; not retrained"
    report_dir = Path(MonitoringReport(month=APRIL, model_version="v0001").output().path)
    monitoring = json.loads((report_dir / "monitoring.json").read_text())
    assert monitoring["model"]["version"] == "v0001"
    assert {"accuracy", "drift", "missing_share", "missingness", "rejected_share", "verdict"} <= set(monitoring)
    assert "data:image/png;base64," in (report_dir / "report.html").read_text()
    steps = loop_events(registry(pipeline_env))
    assert [(e["event"], e["month"]) for e in steps] == [
        ("not monitored", "2021-02"),
        ("not monitored", "2021-03"),
        ("monitored", "2021-04"),
    ]
    assert run_tasks([MonthlyRun(month=MARCH)]).ran == []  # complete: nothing reruns, no duplicate event
    assert len(loop_events(registry(pipeline_env))) == 3


@pytest.mark.slow
def test_forced_degradation_trains_a_challenger_and_records_the_gate_decision(
    pipeline_env, run_tasks, config, monkeypatch
):
    assert run_tasks([TrainingPipeline()]).ok
    # any error counts as degraded: a ratio below 1 is no valid [monitoring] rmse_degraded_ratio (refused up front,
    # tests/integration/test_config_check.py), so the verdict's thresholds are forced in the code instead
    forced = Thresholds(rmse_degraded_ratio=0.01)
    monkeypatch.setattr(MonitoringConfig, "thresholds", lambda self: forced)
    result = run_tasks([MonthlyRun(month=APRIL)])
    assert result.ok, result
    assert {"CandidateScore", "FinalModel", "RegisteredModel", "MonthlyTraining"} <= result.families()
    run = json.loads(Path(MonthlyRun(month=APRIL).output().path).read_text())
    assert run["verdict"] == "degraded" and run["retrained"] is True
    assert run["why_retrained"].startswith("rule degraded fired: RMSE is")  # the rule is named (issue 11.4)
    assert run["challenger_version"] == "v0002"
    meta = registry(pipeline_env).metadata("v0002")
    assert meta["gate"]["promote"] == run["promoted"] and meta["gate"]["reason"] == run["gate_reason"]
    assert [d["month"] for d in meta["data"]] == ["2021-02", "2021-03", "2021-04"]  # the most recent window
    retrained = loop_events(registry(pipeline_env))[-1]
    assert retrained["event"] == "retrained" and retrained["challenger"] == "v0002"
    expected = "v0002" if run["promoted"] else "v0001"
    assert registry(pipeline_env).production()["version"] == expected


def cli(env, *args) -> subprocess.CompletedProcess:
    environ = {**os.environ, "LUIGI_CONFIG_PATH": str(env.cfg_file)}
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), *args], env=environ, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_models_lists_versions_and_rollback_restores_an_earlier_one(pipeline_env, run_tasks):
    assert run_tasks([TrainingPipeline()]).ok
    assert run_tasks([TrainingPipeline(test_month=APRIL)]).ok
    listing = cli(pipeline_env, "models", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {r["version"]: r for r in json.loads(listing.stdout)["versions"]}
    assert rows["v0001"]["status"] == "production"
    assert rows["v0002"]["status"] == "rejected" and "does not beat" in rows["v0002"]["gate_reason"]
    assert all(r["test_rmse"] > 0 for r in rows.values())
    table = cli(pipeline_env, "models")
    assert "v0001" in table.stdout and "production" in table.stdout

    assert cli(pipeline_env, "rollback", "v0002", "--reason", "drill", "--force").returncode == 0
    assert registry(pipeline_env).production()["version"] == "v0002"
    back = cli(pipeline_env, "rollback", "v0001", "--reason", "back")
    assert back.returncode == 0 and "production is now v0001 (was v0002)" in back.stdout
    history, _ = registry(pipeline_env).history()
    assert [h["action"] for h in history] == ["promote", "rollback", "rollback"]
    missing = cli(pipeline_env, "rollback", "v0042")
    assert missing.returncode == 2 and "v0042 is not a registered version" in missing.stderr  # a bad argument
