"""register_with_gate: the first model is promoted, a worse one stays a challenger, a better one replaces it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.dummy import DummyRegressor

from tests.metadata import metadata_for
from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.evaluation.metrics import regression_metrics
from tripduration.evaluation.steps import evaluate_models
from tripduration.registry.gate import production_rmse_on
from tripduration.registry.registration import register_with_gate
from tripduration.registry.store import ModelRegistry
from tripduration.training.candidates import BASELINE, get_candidate
from tripduration.training.features import split_xy
from tripduration.training.steps import concat_tables, fit_candidate, modelling_table, score_candidate, select_best


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", "green-trip-duration")


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    path = tmp_path / "report"
    path.mkdir()
    (path / "report.html").write_text("<html>report</html>")
    return path


class Builder:
    """Dump a model, score it on the test month and describe it as the evaluation step would."""

    def __init__(self, tmp_path: Path, test: pd.DataFrame) -> None:
        self.tmp_path = tmp_path
        self.test = test
        self.count = 0

    def rmse(self, model) -> float:
        X, y = split_xy(self.test)
        return regression_metrics(y, model.predict(X))["rmse"]

    def __call__(self, model, baseline_rmse: float | None = None) -> tuple[Path, dict, float]:
        self.count += 1
        path = self.tmp_path / f"model-{self.count}.joblib"
        joblib.dump(model, path)
        rmse = self.rmse(model)
        baseline = rmse + 1.0 if baseline_rmse is None else baseline_rmse
        metrics = {"test": {"rmse": rmse}, "baseline_test": {"rmse": baseline}}
        metadata = metadata_for(metrics, algorithm=type(model).__name__)
        return path, metadata, rmse


def constant(value: float, train: pd.DataFrame) -> DummyRegressor:
    X, y = split_xy(train)
    return DummyRegressor(strategy="constant", constant=value).fit(X, y)


@pytest.fixture
def build(tmp_path: Path, test_table: pd.DataFrame) -> Builder:
    return Builder(tmp_path, test_table)


def history(registry: ModelRegistry) -> list[dict]:
    """The production changes of the registry's event log."""
    return registry.history()[0]


def test_gate_promotes_first_keeps_worse_as_challenger_and_promotes_better(
    registry, report_dir, build, train_table, test_table
):
    mean = float(train_table["duration_min"].mean())

    # 1. the first model only has to beat the baseline
    first_file, first_meta, first_rmse = build(constant(mean, train_table))
    result = register_with_gate(registry, first_file, report_dir, first_meta, test_table, key="run-1")
    assert result["version"] == "v0001" and result["reused"] is False
    assert result["gate"]["promote"] is True
    assert "no production model yet" in result["gate"]["reason"]
    assert result["gate"]["compared_with_production"] is None
    assert registry.production()["version"] == "v0001"
    assert (registry.versions_dir / "v0001" / "report" / "report.html").exists()

    # 2. a worse model beats its baseline but not production: registered, not promoted, reason recorded
    worse_file, worse_meta, worse_rmse = build(constant(mean + 5.0, train_table))
    assert worse_rmse > first_rmse
    result = register_with_gate(registry, worse_file, report_dir, worse_meta, test_table, key="run-2")
    assert result["version"] == "v0002"
    gate = result["gate"]
    assert gate["promote"] is False
    assert "does not beat the production model's" in gate["reason"]
    assert gate["compared_with_production"] == "v0001"
    assert gate["production_rmse_on_test_month"] == pytest.approx(first_rmse)
    assert registry.metadata("v0002")["gate"] == gate
    assert registry.production()["version"] == "v0001"
    assert len(history(registry)) == 1

    # 3. a better model (a real candidate) is promoted over the first
    better, _ = fit_candidate(get_candidate(BASELINE), train_table)
    better_file, better_meta, better_rmse = build(better)
    assert better_rmse < first_rmse
    result = register_with_gate(registry, better_file, report_dir, better_meta, test_table, key="run-3")
    assert result["version"] == "v0003"
    assert result["gate"]["promote"] is True
    assert result["gate"]["production_rmse_on_test_month"] == pytest.approx(first_rmse)
    pointer = registry.production()
    assert pointer["version"] == "v0003"
    assert pointer["previous_version"] == "v0001"
    assert pointer["metrics"]["test"]["rmse"] == pytest.approx(better_rmse)
    assert [h["version"] for h in history(registry)] == ["v0001", "v0003"]

    # the promoted model loads back (checksum verified) and scores what its metadata says
    model, meta = registry.load_model()
    assert meta["version"] == "v0003"
    assert production_rmse_on(model, test_table) == pytest.approx(better_rmse)


def test_model_that_does_not_beat_its_baseline_is_not_promoted(registry, report_dir, build, train_table, test_table):
    model = constant(float(train_table["duration_min"].mean()), train_table)
    path, meta, rmse = build(model, baseline_rmse=1.0)
    assert rmse > 1.0
    result = register_with_gate(registry, path, report_dir, meta, test_table, key="k")
    assert result["gate"]["promote"] is False
    assert "does not beat the baseline's 1.0000" in result["gate"]["reason"]
    assert registry.versions() == ["v0001"]
    assert registry.production() is None
    assert history(registry) == []


def test_rerun_with_the_same_key_reuses_the_version(registry, report_dir, build, train_table, test_table):
    path, meta, _ = build(constant(float(train_table["duration_min"].mean()), train_table))
    first = register_with_gate(registry, path, report_dir, meta, test_table, key="run-1")
    again = register_with_gate(registry, path, report_dir, meta, test_table, key="run-1")
    assert again == {"version": first["version"], "reused": True, "gate": registry.metadata("v0001")["gate"]}
    assert registry.versions() == ["v0001"]
    assert len(history(registry)) == 1


def test_rerun_completes_a_promotion_interrupted_by_a_crash(registry, report_dir, build, train_table, test_table):
    path, meta, _ = build(constant(float(train_table["duration_min"].mean()), train_table))
    gate = {"promote": True, "reason": "decided before the crash", "compared_with_production": None}
    # the crash happened after the version was registered and before production was switched
    registry.register(path, meta.registered(gate=gate), {"report": report_dir}, key="run-1")
    assert registry.production() is None

    result = register_with_gate(registry, path, report_dir, meta, test_table, key="run-1")
    assert result["reused"] is True
    assert registry.production()["version"] == "v0001"
    assert registry.production()["reason"] == "decided before the crash"


def test_rerun_of_an_older_promotion_does_not_roll_production_back(
    registry, report_dir, build, train_table, test_table
):
    mean = float(train_table["duration_min"].mean())
    old_file, old_meta, _ = build(constant(mean, train_table))
    register_with_gate(registry, old_file, report_dir, old_meta, test_table, key="old")
    better, _ = fit_candidate(get_candidate(BASELINE), train_table)
    new_file, new_meta, _ = build(better)
    register_with_gate(registry, new_file, report_dir, new_meta, test_table, key="new")
    assert registry.production()["version"] == "v0002"

    result = register_with_gate(registry, old_file, report_dir, old_meta, test_table, key="old")
    assert result == {"version": "v0001", "reused": True, "gate": registry.metadata("v0001")["gate"]}
    assert registry.production()["version"] == "v0002"
    assert len(history(registry)) == 2


def test_production_rmse_on_without_a_model_is_none(test_table):
    assert production_rmse_on(None, test_table) is None


def test_score_and_select_best(train_table, test_table):
    scores = [score_candidate(get_candidate(n), train_table, test_table) for n in (BASELINE, "ridge_a1")]
    for score in scores:
        assert score["train_rows"] == len(train_table)
        assert score["validation"]["rows"] == len(test_table)
        assert score["fit_seconds"] >= 0
    best = select_best(scores)
    rmses = {s["candidate"]: s["validation"]["rmse"] for s in scores}
    assert best["best"] == min(rmses, key=rmses.get)
    assert best["baseline_validation"] == scores[0]["validation"]
    assert [r["candidate"] for r in best["ranking"]] == sorted(rmses, key=rmses.get)

    tie = [{**scores[0], "candidate": "b"}, {**scores[0], "candidate": "a"}]
    assert select_best(tie)["best"] == "a"
    assert select_best(tie)["baseline_validation"] is None
    with pytest.raises(ValueError, match="no candidate scores"):
        select_best([])


def test_concat_tables_skips_empty_and_refuses_all_empty(train_table):
    both = concat_tables([train_table.head(3), train_table.iloc[:0], train_table.tail(2)], "training")
    assert len(both) == 5
    assert both.index.equals(pd.RangeIndex(5))
    with pytest.raises(ValueError, match="no kept trips in the training months"):
        concat_tables([train_table.iloc[:0]], "training")
    assert np.isfinite(both["duration_min"]).all()


def test_validate_trip_file_reads_splits_and_reports_the_source(write_parquet):
    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array(
                ["2021-01-05 10:00:00", "2021-01-05 11:00:00", "2020-12-31 10:00:00"], pa.string()
            ),
            "lpep_dropoff_datetime": pa.array(
                ["2021-01-05 10:12:00", "2021-01-05 11:00:10", "2020-12-31 10:30:00"], pa.string()
            ),
            "PULocationID": pa.array([74, 75, 74], pa.int64()),
            "DOLocationID": pa.array([75, 74, 75], pa.int64()),
            "trip_distance": [2.0, 0.1, 3.0],
            "fare_amount": [10.0, 3.0, 12.0],
            "tip_amount": [0.0, 0.0, 0.0],
            "total_amount": [10.0, 3.0, 12.0],
        }
    )
    path = write_parquet(table)
    kept, rejected, summary = validate_trip_file(path, dt.date(2021, 1, 1), Rules(), valid_location_ids=range(1, 266))
    assert len(kept) == 1
    assert rejected["reason"].tolist() == ["duration_out_of_range", "pickup_outside_month"]
    assert summary["source"]["path"] == str(path)
    assert summary["source"]["source_columns"]["pickup_datetime"] == "lpep_pickup_datetime"
    table = modelling_table(kept)
    assert table["duration_min"].tolist() == [12.0]


def test_evaluate_models_writes_report_and_metrics(tmp_path, fitted_candidates, test_table):
    out_dir = tmp_path / "evaluation"
    steps: list[int] = []
    context = {"algorithm": "ridge_a1", "train_rows": 400, "metrics": {"validation": {"rmse": 1.0}}}
    result = evaluate_models(
        fitted_candidates["ridge_a1"],
        fitted_candidates[BASELINE],
        test_table,
        out_dir,
        context,
        progress=lambda _message, percent: steps.append(percent),
    )
    test, base = result["metrics"]["test"], result["metrics"]["baseline_test"]
    assert test["rows"] == base["rows"] == len(test_table)
    assert test["rmse_ratio_to_baseline"] == pytest.approx(test["rmse"] / base["rmse"])
    assert result["metrics"]["validation"] == {"rmse": 1.0}
    assert set(result["feature_importance"]) == set(split_xy(test_table)[0].columns)
    assert steps[-1] == 100 and steps == sorted(steps)
    assert "data:image/png;base64," in (out_dir / "report.html").read_text()
    assert json.loads((out_dir / "metrics.json").read_text())["metrics"]["test"]["rows"] == len(test_table)
