"""Export of the file registry to MLflow (``tripduration.registry.mlflow``, ``pipeline.py export-mlflow``).

A registry is built in a temporary folder from two small real models fitted on a few thousand rows of a real
month, as in test_service.py, with the metadata a real registration writes (lineage, metrics, gate, report,
reference profile): v0001 baseline (passed the gate), v0002 ridge (passed, production), v0003 the same ridge
file again, rejected by the gate. Each test exports its own copy to its own ``sqlite:///`` store with a
file artifact root; one test exports to a real ``mlflow server`` on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import DATA, ConfigOverride
from mlflow_store import client_for, make_empty_store, store_copy
from mlflow_store import mlflow_server as start_mlflow_server

from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.registry.mlflow.export import export_registry, format_summary
from tripduration.registry.mlflow.mapping import (
    challenger_of,
    default_artifact_location,
    run_metrics,
    run_params,
    run_tags,
    sqlite_uri_relative_to,
)
from tripduration.registry.store import ModelRegistry
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import MODEL_INPUT_COLUMNS, model_table, split_xy

mlflow = pytest.importorskip("mlflow")

MODEL_NAME = "green-trip-duration"
TRAIN_ROWS = 3000
LINEAGE = [
    {"role": "train", "month": "2021-01", "file": "green_tripdata_2021-01.parquet", "sha256": "a" * 64},
    {"role": "validation", "month": "2021-02", "file": "green_tripdata_2021-02.parquet", "sha256": "b" * 64},
    {"role": "test", "month": "2021-03", "file": "green_tripdata_2021-03.parquet", "sha256": "c" * 64},
]
REPORT_FILES = ("metrics.json", "report.html", "residuals.png")


# --------------------------------------------------------------------------- fixtures
def _metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    rmse = float(np.sqrt(np.mean((predicted - y) ** 2)))
    r2 = 1.0 - float(np.sum((y - predicted) ** 2) / np.sum((y - y.mean()) ** 2))
    return {"rmse": rmse, "mae": float(np.mean(np.abs(predicted - y))), "r2": r2, "rows": len(y)}


def _metadata(candidate: str, metrics: dict[str, Any], gate: dict[str, Any]) -> dict[str, Any]:
    spec = CANDIDATES[candidate]
    return {
        "algorithm": {"candidate": candidate, "family": spec.family, "params": spec.params, "description": "x"},
        "features": {"inputs": list(MODEL_INPUT_COLUMNS), "engineered": []},
        "color": "green",
        "target": "duration_min",
        "data": [
            {**entry, "bytes": 1000 + i, "rows_in": 4000, "rows_kept": 3900 - i, "rows_rejected": 100 + i}
            for i, entry in enumerate(LINEAGE)
        ],
        "metrics": metrics,
        "feature_importance": {"trip_distance": 9.5, "PULocationID": 0.6},
        "libraries": {"python": "3.11.7", "scikit-learn": "1.7.2", "numpy": "2.3.5", "pandas": "2.3.3"},
        "gate": gate,
        "pipeline_task": f"RegisteredModel_{candidate}",
    }


def _report(folder: Path, metrics: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics, "final_training_rows": TRAIN_ROWS}))
    (folder / "report.html").write_text("<html><body>report</body></html>")
    (folder / "residuals.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 32)
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Registry root: v0001 baseline (passed), v0002 ridge (passed, production), v0003 same ridge (rejected)."""
    kept, _rejected, _summary = validate_trip_file(
        DATA / "green_tripdata_2021-01.parquet", dt.date(2021, 1, 1), Rules()
    )
    table = model_table(kept).sample(frac=1.0, random_state=7).reset_index(drop=True)
    X, y = split_xy(table.iloc[:TRAIN_ROWS])
    X_test, y_test = split_xy(table.iloc[TRAIN_ROWS : TRAIN_ROWS + 1000])
    work = tmp_path_factory.mktemp("mlflow-models")
    registry = ModelRegistry(work / "models", MODEL_NAME)
    fitted = {name: build_pipeline(CANDIDATES[name]).fit(X, y) for name in ("baseline_linreg", "ridge_a1")}
    base_test = _metrics(y_test.to_numpy(), fitted["baseline_linreg"].predict(X_test))
    plan = [
        ("baseline_linreg", {"promote": True, "reason": "first model", "compared_with_production": None}),
        ("ridge_a1", {"promote": True, "reason": "beats v0001", "compared_with_production": "v0001"}),
        ("ridge_a1", {"promote": False, "reason": "does not beat v0002", "compared_with_production": "v0002"}),
    ]
    for i, (name, gate) in enumerate(plan, start=1):
        path = work / f"{name}.joblib"
        joblib.dump(fitted[name], path)
        test = _metrics(y_test.to_numpy(), fitted[name].predict(X_test))
        test["rmse_ratio_to_baseline"] = test["rmse"] / base_test["rmse"]
        metrics = {"test": test, "baseline_test": base_test, "validation": test, "baseline_validation": base_test}
        gate = {**gate, "production_rmse_on_test_month": 7.5 if gate["compared_with_production"] else None}
        version = registry.register(
            path,
            _metadata(name, metrics, gate),
            {"report": _report(work / f"report-{i}", metrics)},
            extra_files={"reference_profile.json": json.dumps({"features": {}, "version": i})},
        )
        assert version == f"v{i:04d}"
    with registry.lock():
        registry.set_production("v0001", "first model")
        registry.set_production("v0002", "beats v0001")
    return registry.root


@pytest.fixture
def registry(template: Path, tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "models"
    shutil.copytree(template, root)
    return ModelRegistry(root, MODEL_NAME)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_empty_store(tmp_path_factory.mktemp("mlflow-empty"))


@pytest.fixture
def store(tmp_path: Path, empty_store: Path) -> str:
    return store_copy(empty_store, tmp_path / "mlflow")


@pytest.fixture
def artifacts(tmp_path: Path) -> str:
    return (tmp_path / "mlflow-artifacts").as_uri()


@dataclass
class Seen:
    """What MLflow holds for the model: its runs (by registry version) and model versions."""

    runs: dict[str, Any]
    versions: dict[str, Any]  # registry version -> ModelVersion
    aliases: dict[str, str]  # alias -> registry version


def seen(uri: str) -> Seen:
    client = client_for(uri)
    experiment = client.get_experiment_by_name(MODEL_NAME)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    by_version: dict[str, Any] = {}
    for run in runs:
        key = run.data.tags["registry_version"]
        assert key not in by_version, f"two runs for {key}"
        by_version[key] = run
    versions = {}
    for mv in client.search_model_versions(f"name = '{MODEL_NAME}'"):
        key = mv.tags["registry_version"]
        assert key not in versions, f"two model versions for {key}"
        versions[key] = mv
    number_to_version = {str(mv.version): key for key, mv in versions.items()}
    aliases = {a: number_to_version[str(n)] for a, n in client.get_registered_model(MODEL_NAME).aliases.items()}
    return Seen(by_version, versions, aliases)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


# --------------------------------------------------------------------------- pure helpers
def test_params_metrics_and_tags_come_from_the_metadata(registry: ModelRegistry) -> None:
    meta, typed = registry.metadata("v0002"), registry.model_metadata("v0002")
    params = run_params(typed, {"final_training_rows": 3000})
    assert params["algorithm.candidate"] == "ridge_a1"
    assert params["algorithm.family"] == "ridge_onehot"
    assert params["algorithm.params.alpha"] == str(CANDIDATES["ridge_a1"].params["alpha"])
    assert (params["training_months"], params["validation_month"], params["test_month"]) == (
        "2021-01",
        "2021-02",
        "2021-03",
    )
    assert params["training_rows"] == "3000"
    assert "fit_rows" not in params  # not recorded by this registration: absent, not invented
    metrics = run_metrics(typed)
    assert metrics["test_rmse"] == pytest.approx(meta["metrics"]["test"]["rmse"])
    assert metrics["baseline_test_rmse"] == pytest.approx(meta["metrics"]["baseline_test"]["rmse"])
    assert metrics["test_rmse_ratio_to_baseline"] == pytest.approx(meta["metrics"]["test"]["rmse_ratio_to_baseline"])
    assert metrics["gate_production_rmse_on_test_month"] == 7.5
    tags = run_tags(typed, "v0002", registry.home)
    assert tags["data.train.2021-01.sha256"] == "a" * 64
    assert tags["data.test.2021-03.rows_rejected"] == "102"
    assert tags["library.scikit-learn"] == "1.7.2"
    assert (tags["gate.promote"], tags["gate.reason"]) == ("true", "beats v0001")
    assert tags["model_sha256"] == meta["model_sha256"]


def test_challenger_is_the_newest_passed_version_that_is_not_production(registry: ModelRegistry) -> None:
    assert challenger_of(registry, "v0002") == "v0001"  # v0003 was rejected by the gate
    assert challenger_of(registry, "v0001") == "v0002"
    assert challenger_of(ModelRegistry(registry.root, "no-such-model"), None) is None


def test_sqlite_locations(tmp_path: Path) -> None:
    assert sqlite_uri_relative_to("sqlite:///var/mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/var/mlflow.db"
    assert sqlite_uri_relative_to("sqlite:////abs/mlflow.db", tmp_path) == "sqlite:////abs/mlflow.db"
    assert sqlite_uri_relative_to("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert default_artifact_location(f"sqlite:///{tmp_path}/db/mlflow.db") == (tmp_path / "db/mlartifacts").as_uri()
    assert default_artifact_location("http://127.0.0.1:5000") is None


# --------------------------------------------------------------------------- against a sqlite store
def test_export_mirrors_runs_model_versions_and_aliases(
    registry: ModelRegistry, store: str, artifacts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_digest(registry.root)
    result = export_registry(registry, store, artifacts)

    assert result["errors"] == []
    assert result["created"] == {"runs": 3, "model_versions": 3}
    mirror = seen(store)
    assert sorted(mirror.runs) == sorted(mirror.versions) == ["v0001", "v0002", "v0003"]
    run = mirror.runs["v0002"]
    meta = registry.metadata("v0002")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "v0002"
    assert run.data.params["algorithm.candidate"] == "ridge_a1"
    assert run.data.params["test_month"] == "2021-03"
    assert run.data.metrics["test_rmse"] == pytest.approx(meta["metrics"]["test"]["rmse"])
    assert run.data.metrics["baseline_test_rmse"] == pytest.approx(meta["metrics"]["baseline_test"]["rmse"])
    assert run.data.tags["model_sha256"] == meta["model_sha256"]
    assert run.data.tags["registered_at"] == meta["registered_at"]
    assert run.data.tags["data.validation.2021-02.file"] == "green_tripdata_2021-02.parquet"
    # the same model file in v0002 and v0003: two runs all the same, told apart by registry_version
    assert mirror.runs["v0003"].data.tags["model_sha256"] == meta["model_sha256"]
    assert mirror.runs["v0003"].info.run_id != run.info.run_id
    assert mirror.runs["v0003"].data.tags["gate.promote"] == "false"

    client = client_for(store)
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report", "metadata.json", "reference_profile.json"} <= listed
    reported = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert reported == {f"report/{name}" for name in REPORT_FILES}
    assert run.info.artifact_uri.startswith(artifacts)
    local = Path(client.download_artifacts(run.info.run_id, "metadata.json", str(Path(store[10:]).parent)))
    assert json.loads(local.read_text()) == meta

    version = mirror.versions["v0002"]
    assert version.run_id == run.info.run_id
    # the source is the model logged by mlflow.sklearn.log_model in that run (MLflow 3: a LoggedModel)
    assert version.source == run.data.tags["mlflow_model_uri"]
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.source_run_id == run.info.run_id
    assert logged.artifact_location.startswith(artifacts)
    assert version.tags["model_sha256"] == meta["model_sha256"]
    assert mirror.aliases == {"production": "v0002", "challenger": "v0001"}
    # the registered model is a loadable sklearn model that predicts like ours
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    loaded = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@production")
    ours, _ = registry.load_model("v0002")
    sample = pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2021-01-05 08:00", "2021-01-06 18:30"]),
            "PULocationID": [74, 75],
            "DOLocationID": [75, 42],
            "trip_distance": [1.2, 3.4],
            "VendorID": [2.0, np.nan],
            "RatecodeID": [1.0, np.nan],
            "trip_type": [1.0, np.nan],
            "passenger_count": [1.0, np.nan],
        }
    )
    np.testing.assert_allclose(loaded.predict(sample), ours.predict(sample))
    assert tree_digest(registry.root) == before, "the export wrote into the file registry"


@pytest.mark.filterwarnings("ignore:.*validate_serving_input.*:FutureWarning")  # the scoring server's parsing
def test_the_mlflow_model_takes_the_http_apis_fields_with_its_signature_and_input_example(
    registry: ModelRegistry, store: str, artifacts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_registry(registry, store, artifacts)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    uri = f"models:/{MODEL_NAME}@production"
    model = mlflow.pyfunc.load_model(uri)
    declared = {c.name: (c.type.name, c.required) for c in model.metadata.get_input_schema().inputs}
    assert declared == {
        "pickup_datetime": ("datetime", True),
        "PULocationID": ("long", True),
        "DOLocationID": ("long", True),
        "trip_distance": ("double", True),
        "VendorID": ("double", False),
        "RatecodeID": ("double", False),
        "trip_type": ("double", False),
        "passenger_count": ("double", False),
    }
    example = model.input_example
    assert list(example.columns) == ["pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]
    # the four required fields are enough; the optional ones are what the registry model gets as missing
    ours, _ = registry.load_model("v0002")
    full = example.assign(**{c: np.nan for c in ("VendorID", "RatecodeID", "trip_type", "passenger_count")})
    np.testing.assert_allclose(model.predict(example), ours.predict(full))
    # the scoring server's JSON: integer codes for some trips, none for others
    records = [
        {"pickup_datetime": "2021-03-05T08:30:00", "PULocationID": 74, "DOLocationID": 75, "trip_distance": 1.6},
        {"pickup_datetime": "2021-03-05T09:00:00", "PULocationID": 41, "DOLocationID": 151, "trip_distance": 3.2}
        | {"VendorID": 2, "RatecodeID": 1, "trip_type": 1, "passenger_count": 1},
    ]
    served = mlflow.models.validate_serving_input(uri, json.dumps({"dataframe_records": records}))
    assert len(served) == 2 and np.isfinite(served).all()
    # the whole tripduration package ships with the model (it loads where the project is not installed)
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(Path(store[10:]).parent / "dl")))
    assert (local / "code" / "tripduration" / "training" / "features.py").is_file()


def test_export_again_creates_nothing_and_aliases_follow_the_pointer(
    registry: ModelRegistry, store: str, artifacts: str
) -> None:
    first = export_registry(registry, store, artifacts)
    again = export_registry(registry, store, artifacts)

    assert again["created"] == {"runs": 0, "model_versions": 0}
    assert again["existing"] == {"runs": 3, "model_versions": 3}
    assert [r["run_id"] for r in again["versions"]] == [r["run_id"] for r in first["versions"]]
    assert {alias: e["action"] for alias, e in again["aliases"].items()} == {
        "production": "unchanged",
        "challenger": "unchanged",
    }
    mirror = seen(store)  # raises on a duplicate run or model version
    assert len(mirror.runs) == len(mirror.versions) == 3
    assert "already there: 3 run(s), 3 model version(s)" in format_summary(again)

    # a rollback in the file registry moves the aliases at the next export, and creates nothing
    registry.rollback("v0001", "test rollback")
    rolled = export_registry(registry, store, artifacts)
    assert seen(store).aliases == {"production": "v0001", "challenger": "v0002"}
    assert rolled["aliases"]["production"]["action"] == "moved"
    assert rolled["created"] == {"runs": 0, "model_versions": 0}

    # nothing but production passed the gate: the challenger alias is removed
    meta_path = registry.versions_dir / "v0002" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["gate"]["promote"] = False
    meta_path.write_text(json.dumps(meta))
    result = export_registry(registry, store, artifacts)
    assert result["aliases"]["challenger"]["action"] == "removed"
    assert seen(store).aliases == {"production": "v0001"}


def test_export_repairs_what_an_interrupted_export_left(registry: ModelRegistry, store: str, artifacts: str) -> None:
    export_registry(registry, store, artifacts)
    client = client_for(store)
    before = seen(store)
    # killed after creating v0002's run: the run is unfinished and no model version points at it
    v2 = before.versions["v0002"]
    client.delete_model_version(MODEL_NAME, v2.version)
    client.set_terminated(v2.run_id, status="FAILED")
    # and someone deleted v0001's model version in the MLflow UI
    v1 = before.versions["v0001"]
    client.delete_model_version(MODEL_NAME, v1.version)
    result = export_registry(registry, store, artifacts)

    rows = {r["version"]: r for r in result["versions"]}
    assert (rows["v0002"]["run"], rows["v0002"]["model_version_status"]) == ("recreated", "created")
    assert (rows["v0001"]["run"], rows["v0001"]["model_version_status"]) == ("existing", "created")
    assert (rows["v0003"]["run"], rows["v0003"]["model_version_status"]) == ("existing", "existing")
    after = seen(store)
    assert after.runs["v0002"].info.run_id == rows["v0002"]["run_id"] != v2.run_id
    assert after.versions["v0001"].run_id == v1.run_id
    assert after.aliases == {"production": "v0002", "challenger": "v0001"}


def test_tampered_model_is_refused_and_the_others_exported(registry: ModelRegistry, store: str, artifacts: str) -> None:
    with open(registry.model_path("v0001"), "ab") as fh:
        fh.write(b"tampered")
    result = export_registry(registry, store, artifacts)

    assert [e["version"] for e in result["errors"]] == ["v0001"]
    assert "sha256" in result["errors"][0]["error"]
    mirror = seen(store)
    assert sorted(mirror.runs) == ["v0002", "v0003"]
    assert result["aliases"]["challenger"]["action"].startswith("left as it was: v0001 failed")
    assert mirror.aliases == {"production": "v0002"}
    assert "v0001  FAILED: RegistryError" in format_summary(result)


def mlflow_versions_of(uri: str, version: str) -> list[Any]:
    """Every MLflow model version that mirrors registry ``version`` (there must be one)."""
    return [
        mv
        for mv in client_for(uri).search_model_versions(f"name = '{MODEL_NAME}'")
        if mv.tags["registry_version"] == version
    ]


def test_model_bytes_changed_after_export_fail_the_next_export_naming_the_version(
    registry: ModelRegistry, store: str, config: ConfigOverride, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 21 section 6: flipped bytes in a mirrored version's model are an error, not 'existing'."""
    import pipeline

    config.set("paths", "registry_dir", str(registry.root))
    assert pipeline.main(["export-mlflow", "--tracking-uri", store]) == 0
    capsys.readouterr()
    model = Path(registry.model_path("v0001"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))

    assert pipeline.main(["export-mlflow", "--tracking-uri", store]) == 1
    out = capsys.readouterr().out
    failed = [line.strip() for line in out.splitlines() if re.match(r"\s+v\d{4}  FAILED", line)]
    assert len(failed) == 1 and failed[0].startswith("v0001  FAILED: RegistryError"), out
    assert "does not match metadata" in failed[0]
    assert len(mlflow_versions_of(store, "v0001")) == 1


def test_model_and_sha256_replaced_after_export_fail_naming_the_version_never_a_second_model_version(
    registry: ModelRegistry, store: str, config: ConfigOverride, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 21 section 6: a version whose model and recorded sha256 were both replaced after its export is
    refused by name; MLflow keeps one model version for it."""
    import pipeline

    config.set("paths", "registry_dir", str(registry.root))
    assert pipeline.main(["export-mlflow", "--tracking-uri", store]) == 0
    capsys.readouterr()
    # v0001 (not production: the pointer's sha256 cannot catch it) gets v0002's model, and its sha256
    shutil.copyfile(registry.model_path("v0002"), registry.model_path("v0001"))
    meta_path = registry.versions_dir / "v0001" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model_sha256"] = registry.metadata("v0002")["model_sha256"]
    meta_path.write_text(json.dumps(meta))
    assert registry.verify("v0001") == meta["model_sha256"]  # the registry's own checks pass

    assert pipeline.main(["export-mlflow", "--tracking-uri", store]) == 1
    out = capsys.readouterr().out
    failed = [line.strip() for line in out.splitlines() if re.match(r"\s+v\d{4}  FAILED", line)]
    assert len(failed) == 1 and failed[0].startswith("v0001  FAILED: MlflowExportError"), out
    assert "changed after export" in failed[0]
    assert len(mlflow_versions_of(store, "v0001")) == 1
    assert mlflow_versions_of(store, "v0001")[0].tags["model_sha256"] != meta["model_sha256"]


# --------------------------------------------------------------------------- the command line
def test_pipeline_export_mlflow_command(
    registry: ModelRegistry, store: str, config: ConfigOverride, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline

    config.set("paths", "registry_dir", str(registry.root))
    assert pipeline.main(["export-mlflow", "--tracking-uri", store]) == 0
    first = capsys.readouterr().out
    assert "created 3 run(s) and 3 model version(s)" in first
    assert "@production -> v0002 = version 2 (set)" in first
    # [mlflow] tracking_uri in luigi.cfg is used when no flag is given
    config.set("mlflow", "tracking_uri", store)
    assert pipeline.main(["export-mlflow", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["created"] == {"runs": 0, "model_versions": 0}
    # artifacts beside the database, not in the working directory
    run = seen(store).runs["v0001"]
    assert run.info.artifact_uri.startswith(default_artifact_location(store))


def test_pipeline_export_mlflow_without_uri_exits_2(
    registry: ModelRegistry, config: ConfigOverride, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config.set("paths", "registry_dir", str(registry.root))
    assert pipeline.main(["export-mlflow"]) == 2
    assert "no MLflow tracking URI" in capsys.readouterr().err


# --------------------------------------------------------------------------- against `mlflow server`
@pytest.fixture
def mlflow_server(tmp_path: Path, empty_store: Path) -> Iterator[str]:
    with start_mlflow_server(tmp_path / "server", empty_store) as url:
        yield url


@pytest.mark.slow  # ~40 s on an idle 2-core machine: server start ~12 s, one HTTP upload per artifact
def test_export_to_a_real_mlflow_server(
    registry: ModelRegistry, mlflow_server: str, config: ConfigOverride, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline

    config.set("paths", "registry_dir", str(registry.root))
    # through the command line: --json must stay valid JSON (MLflow prints run URLs for a server)
    assert pipeline.main(["export-mlflow", "--tracking-uri", mlflow_server, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["errors"] == []
    assert result["created"] == {"runs": 3, "model_versions": 3}
    again = export_registry(registry, mlflow_server)
    assert again["created"] == {"runs": 0, "model_versions": 0}
    registry.rollback("v0001", "test rollback")
    export_registry(registry, mlflow_server)

    # what a user of the server sees, over its REST API
    query = urllib.request.Request(
        f"{mlflow_server}/api/2.0/mlflow/registered-models/get?name={MODEL_NAME}", method="GET"
    )
    with urllib.request.urlopen(query, timeout=10) as answer:
        model = json.loads(answer.read())["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model["aliases"]}
    mirror = seen(mlflow_server)
    assert aliases == {"production": mirror.versions["v0001"].version, "challenger": mirror.versions["v0002"].version}
    client = client_for(mlflow_server)
    run_id = mirror.runs["v0002"].info.run_id
    assert {f"report/{name}" for name in REPORT_FILES} == {a.path for a in client.list_artifacts(run_id, "report")}
    assert len(mirror.runs) == 3
