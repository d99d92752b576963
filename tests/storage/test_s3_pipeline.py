"""The real training graph and the batch/monitoring tasks with ``[paths] work_dir`` and ``raw_dir`` in S3.

Same sampled months as tests/integration/test_training_graph.py, against the moto server of
tests/storage/conftest.py: every output is an object in the bucket, nothing is written in a local work
directory, the metrics equal a local run's, a rerun runs nothing, and an input replaced in the bucket
makes new outputs (its ETag is part of the fingerprints).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tasks import BatchPredictions, MonitoringReport, TrainingPipeline
from tripduration.io.local import is_temporary
from tripduration.registry.store import ModelRegistry

# real luigid / cron / browser / S3-server processes: part of `make test-slow` (CI runs it), not `make test`
pytestmark = pytest.mark.slow

MONTHS = ("2021-01", "2021-02", "2021-03", "2021-04")


def upload_raw(s3: Any, raw: Path) -> None:
    client = s3.client()
    for month in MONTHS:
        name = f"green_tripdata_{month}.parquet"
        client.upload_file(str(raw / name), s3.bucket, f"raw/{name}")


def keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_metrics(registry_dir: Path | str) -> dict[str, Any]:
    registry = ModelRegistry(registry_dir, "green-trip-duration")
    return registry.metadata(registry.versions()[-1])["metrics"]["test"]


test_metrics.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def s3_paths(pipeline_env, s3_env, tmp_path, monkeypatch) -> Any:
    """work_dir, raw_dir and registry_dir in the bucket (the zone lookup stays a local file)."""
    upload_raw(s3_env, pipeline_env.raw_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pipeline_env.config.set("paths", "work_dir", s3_env.url("work"))
    pipeline_env.config.set("paths", "raw_dir", s3_env.url("raw"))
    pipeline_env.config.set("paths", "registry_dir", s3_env.url("registry"))
    return s3_env


def test_training_graph_on_s3_matches_the_local_run(pipeline_env, run_tasks, s3_paths, tmp_path):
    # the one-host local run first (config of pipeline_env), then the same graph with work_dir/raw_dir in S3
    pipeline_env.config.set("paths", "work_dir", str(pipeline_env.work_dir))
    pipeline_env.config.set("paths", "raw_dir", str(pipeline_env.raw_dir))
    pipeline_env.config.set("paths", "registry_dir", str(pipeline_env.registry_dir))
    assert run_tasks([TrainingPipeline()]).ok
    local = test_metrics(pipeline_env.registry_dir)

    pipeline_env.config.set("paths", "work_dir", s3_paths.url("work"))
    pipeline_env.config.set("paths", "raw_dir", s3_paths.url("raw"))
    pipeline_env.config.set("paths", "registry_dir", s3_paths.url("registry"))
    result = run_tasks([TrainingPipeline()])
    assert result.ok, result
    assert sum(r.startswith("CandidateScore") for r in result.ran) == 3
    assert test_metrics(s3_paths.url("registry")) == local

    written = keys(s3_paths, "work/")
    families = {key.split("/")[1] for key in written}
    assert {"ValidatedTrips", "ModelInputTable", "FinalModel", "EvaluationReport", "RegisteredModel"} <= families
    assert any(k.startswith("work/EvaluationReport/") and k.endswith("/report/_SUCCESS") for k in written)
    assert not any(is_temporary(k) for k in written)
    # the lineage records the sha256 of the bytes read, and the object's URL, not a scratch path
    registry = ModelRegistry(s3_paths.url("registry"), "green-trip-duration")
    assert registry.versions() == ["v0001"] and registry.production()["version"] == "v0001"
    assert any(k.startswith("registry/green-trip-duration/events.jsonl.d/") for k in keys(s3_paths, "registry/"))
    data = registry.metadata(registry.versions()[-1])["data"]
    assert all(len(d["sha256"]) == 64 for d in data)
    assert {d["file"] for d in data} == {f"green_tripdata_{m}.parquet" for m in MONTHS[:3]}

    # no-op rerun: nothing runs, nothing new in the bucket
    rerun = run_tasks([TrainingPipeline()])
    assert rerun.ok and set(rerun.ran) == set(), rerun
    assert keys(s3_paths, "work/") == written


def test_replaced_raw_object_makes_new_outputs(pipeline_env, run_tasks, s3_paths, tmp_path):
    import pyarrow.parquet as pq

    assert run_tasks([TrainingPipeline()]).ok
    # the test month replaced by other bytes under the same name (its first 3000 trips)
    smaller = tmp_path / "green_tripdata_2021-03.parquet"
    pq.write_table(pq.read_table(pipeline_env.raw_dir / smaller.name).slice(0, 3000), smaller)
    s3_paths.client().upload_file(str(smaller), s3_paths.bucket, f"raw/{smaller.name}")
    rerun = run_tasks([TrainingPipeline()])
    assert rerun.ok, rerun
    assert any(r.startswith("ValidatedTrips") and "2021-03" in r for r in rerun.ran), rerun.ran


def test_batch_predictions_and_monitoring_on_s3(pipeline_env, run_tasks, s3_paths):
    assert run_tasks([TrainingPipeline()]).ok
    april = dt.date(2021, 4, 1)
    result = run_tasks([BatchPredictions(month=april), MonitoringReport(month=april)])
    assert result.ok, result
    report = MonitoringReport(month=april).output()
    assert report.exists() and report.path.startswith("s3://")
    monitoring = report.child("monitoring.json").load()
    assert monitoring["month"] == "2021-04" and monitoring["verdict"] in ("ok", "drift", "degraded")
    predictions = BatchPredictions(month=april).output()
    assert predictions.exists()
    assert len(predictions.load()) > 0
