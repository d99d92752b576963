"""The real training graph, built in a temporary directory on samples of the real months."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from luigi.task_register import Register

from tasks import (
    CandidateScore,
    EvaluationReport,
    FinalModel,
    ModelInputTable,
    ModelSelection,
    RegisteredModel,
    TrainingPipeline,
    TripData,
    ValidatedTrips,
)
from tripduration.registry.store import ModelRegistry
from tripduration.training.features import LEAKY_COLUMNS, MODEL_INPUT_COLUMNS

TRAINING_FAMILIES = {"CandidateScore", "ModelSelection", "FinalModel"}


def default_pipeline(**overrides) -> TrainingPipeline:
    return TrainingPipeline(**overrides)


def test_full_graph_registers_a_model_with_complete_metadata(pipeline_env, run_tasks):
    result = run_tasks([default_pipeline()])
    assert result.ok, result
    # 3 validated months, 3 tables, 3 candidates, selection, 2 final models, report, registration, wrapper
    assert result.families() == {
        "ValidatedTrips",
        "ModelInputTable",
        "CandidateScore",
        "ModelSelection",
        "FinalModel",
        "EvaluationReport",
        "RegisteredModel",
        "TrainingPipeline",
    }
    assert sum(r.startswith("CandidateScore") for r in result.ran) == 3
    assert sum(r.startswith("FinalModel") for r in result.ran) == 2

    registry = ModelRegistry(pipeline_env.registry_dir, "green-trip-duration")
    assert registry.versions() == ["v0001"]
    meta = registry.metadata("v0001")
    for key in ("version", "registered_at", "algorithm", "features", "data", "metrics", "libraries", "model_sha256"):
        assert key in meta, key
    assert {d["role"] for d in meta["data"]} == {"train", "validation", "test"}
    assert all(len(d["sha256"]) == 64 and d["rows_in"] == d["rows_kept"] + d["rows_rejected"] for d in meta["data"])
    for split in ("validation", "baseline_validation", "test", "baseline_test"):
        assert {"rmse", "mae", "r2", "rows"} <= set(meta["metrics"][split])
    assert meta["gate"]["reason"]
    version_dir = pipeline_env.registry_dir / "green-trip-duration" / "versions" / "v0001"
    html = (version_dir / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    if meta["gate"]["promote"]:
        assert registry.production()["version"] == "v0001"

    model, _ = registry.load_model("v0001")
    table = pd.read_parquet(ModelInputTable(month=dt.date(2021, 3, 1)).output().path)
    assert set(table.columns) == {*MODEL_INPUT_COLUMNS, "duration_min"}
    assert not set(table.columns) & (LEAKY_COLUMNS - {"duration_min"})
    assert model.predict(table[list(MODEL_INPUT_COLUMNS)].head(5)).shape == (5,)


def test_validated_trips_account_for_every_row(pipeline_env, run_tasks):
    task = ValidatedTrips(month=dt.date(2021, 1, 1))
    assert run_tasks([task]).ok
    out = task.output()
    summary = json.loads(Path(out["summary.json"].path).read_text())
    kept = pd.read_parquet(out["kept.parquet"].path)
    rejected = pd.read_parquet(out["rejected.parquet"].path)
    assert summary["rows_in"] == len(kept) + len(rejected) == 4000
    assert summary["rows_rejected"] == len(rejected) > 0
    assert rejected["reason"].notna().all()
    assert sum(summary["rejected_by_reason"].values()) == len(rejected)
    minutes = (kept["dropoff_datetime"] - kept["pickup_datetime"]).dt.total_seconds() / 60
    assert minutes.between(1, 60).all()
    assert (kept["pickup_datetime"].dt.month == 1).all()


def test_second_run_executes_nothing(pipeline_env, run_tasks):
    assert run_tasks([default_pipeline()]).ok
    files_before = {p: p.stat().st_mtime_ns for p in pipeline_env.files() if p.is_file()}
    again = run_tasks([default_pipeline()])
    assert again.ok and again.ran == []
    assert {p: p.stat().st_mtime_ns for p in pipeline_env.files() if p.is_file()} == files_before


@pytest.mark.slow
def test_changing_only_the_test_month_trains_no_model(pipeline_env, run_tasks):
    assert run_tasks([default_pipeline()]).ok
    result = run_tasks([default_pipeline(test_month=dt.date(2021, 4, 1))])
    assert result.ok, result
    assert not result.families() & TRAINING_FAMILIES, result.ran
    assert result.families() == {
        "ValidatedTrips",
        "ModelInputTable",
        "EvaluationReport",
        "RegisteredModel",
        "TrainingPipeline",
    }
    assert all("2021-04" in r for r in result.ran if r.startswith(("ValidatedTrips", "ModelInputTable")))
    assert ModelRegistry(pipeline_env.registry_dir, "green-trip-duration").versions() == ["v0001", "v0002"]


def test_changed_rule_threshold_makes_new_outputs_and_keeps_old(pipeline_env, run_tasks, config):
    task = ValidatedTrips(month=dt.date(2021, 1, 1))
    assert run_tasks([task]).ok
    old_dir = pipeline_env.work_dir / task.output_dir()
    config.set("validation", "max_duration_min", "45")
    new_task = ValidatedTrips(month=dt.date(2021, 1, 1))
    assert pipeline_env.work_dir / new_task.output_dir() != old_dir
    assert not new_task.complete()
    assert run_tasks([new_task]).ok
    assert old_dir.exists()
    kept = pd.read_parquet(new_task.output()["kept.parquet"].path)
    minutes = (kept["dropoff_datetime"] - kept["pickup_datetime"]).dt.total_seconds() / 60
    assert minutes.max() <= 45


def test_output_paths_encode_parameters_and_code(pipeline_env, monkeypatch):
    a = CandidateScore(candidate="ridge_a1")
    b = CandidateScore(candidate="ridge_a10")
    assert a.output().path != b.output().path
    assert "ridge_a1" in a.output().path
    before = a.output().path
    # an upstream change of code reaches every downstream path (editing real code: test_code_fingerprints.py)
    monkeypatch.setattr(ValidatedTrips, "code_digest", classmethod(lambda cls: "edited"))
    Register.clear_instance_cache()
    assert CandidateScore(candidate="ridge_a1").output().path != before


def test_missing_month_is_downloaded_from_the_url_template(pipeline_env, run_tasks):
    remote = pipeline_env.work_dir.parent / "remote"
    remote.mkdir()
    name = "green_tripdata_2021-02.parquet"
    shutil.move(pipeline_env.raw_dir / name, remote / name)
    task = TripData(month=dt.date(2021, 2, 1))
    assert str(pipeline_env.work_dir) in task.output().path
    assert run_tasks([task]).ok
    assert (remote / name).read_bytes() == Path(task.output().path).read_bytes()


def test_missing_month_that_cannot_be_downloaded_fails_naming_the_url(pipeline_env, run_tasks):
    task = ValidatedTrips(month=dt.date(2020, 5, 1))
    result = run_tasks([task])
    assert not result.ok
    assert any(r.startswith("TripData") for r in result.failed)
    assert not task.complete()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_months": "2021-02", "val_month": dt.date(2021, 2, 1)}, "validation month 2021-02"),
        ({"test_month": dt.date(2021, 1, 1)}, "test month 2021-01"),
    ],
)
def test_overlapping_months_are_refused(pipeline_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvaluationReport(**kwargs)


def test_selection_and_final_models_do_not_depend_on_the_test_month(pipeline_env):
    a = RegisteredModel(test_month=dt.date(2021, 3, 1))
    b = RegisteredModel(test_month=dt.date(2021, 4, 1))
    assert a.output().path != b.output().path
    for family in (ModelSelection, FinalModel):
        assert family().output_dir() == family().output_dir()
    assert "test_month" not in FinalModel.get_param_names()


@pytest.mark.slow
def test_same_inputs_give_identical_metrics_with_any_worker_count(pipeline_env, run_tasks, config, tmp_path):
    def metrics() -> dict:
        registry = ModelRegistry(Path(config.config.get("paths", "registry_dir")), "green-trip-duration")
        return registry.metadata(registry.versions()[-1])["metrics"]

    assert run_tasks([default_pipeline()], workers=1).ok
    first = metrics()
    config.set("paths", "work_dir", str(tmp_path / "work2"))
    config.set("paths", "registry_dir", str(tmp_path / "models2"))
    assert run_tasks([default_pipeline()], workers=2).ok
    assert metrics() == first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"VendorID,lpep_pickup_datetime\n2,2021-01-01 00:00:00\n", "not a readable parquet file"),
        (b"", "not a readable parquet file"),
    ],
)
def test_bad_raw_file_fails_validation_naming_the_file(pipeline_env, run_tasks, content, message, caplog):
    raw = pipeline_env.raw_dir / "green_tripdata_2021-01.parquet"
    raw.write_bytes(content)
    task = ValidatedTrips(month=dt.date(2021, 1, 1))
    with caplog.at_level("ERROR", logger="luigi-interface"):
        result = run_tasks([task])
    assert not result.ok and result.failed == [str(task)]
    assert message in caplog.text and str(raw) in caplog.text
    folder = pipeline_env.work_dir / task.output_dir()
    assert not folder.exists() or not any(folder.iterdir())


def test_raw_file_without_a_required_column_names_it(pipeline_env, run_tasks, caplog):
    import pyarrow.parquet as pq

    raw = pipeline_env.raw_dir / "green_tripdata_2021-01.parquet"
    pq.write_table(pq.read_table(raw).drop_columns(["PULocationID"]), raw)
    with caplog.at_level("ERROR", logger="luigi-interface"):
        result = run_tasks([ValidatedTrips(month=dt.date(2021, 1, 1))])
    assert not result.ok
    assert "required column 'PULocationID' is missing" in caplog.text and str(raw) in caplog.text
