"""Registry integrity: racing registrations, a crash during promotion, a tampered model file."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor

import tripduration.io.local as local_storage
import tripduration.registry.store as registry_module
from tasks import BatchPredictions, TrainingPipeline
from tests.metadata import metadata_for

# the moto S3 server of tests/storage: the race below runs against a local folder and an S3 bucket
from tests.storage.conftest import moto_server, s3_env  # noqa: F401
from tripduration.errors import RegistryError
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.registration import register_with_gate
from tripduration.registry.store import ModelRegistry
from tripduration.training.features import MODEL_INPUT_COLUMNS, TARGET


def trips_table(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "pickup_datetime": pd.date_range("2021-03-01", periods=n, freq="h").astype("datetime64[us]"),
            "PULocationID": rng.integers(1, 200, n).astype("int32"),
            "DOLocationID": rng.integers(1, 200, n).astype("int32"),
            "trip_distance": rng.uniform(0.5, 10, n),
            "VendorID": pd.array([2] * n, dtype="Int32"),
            "RatecodeID": pd.array([1] * n, dtype="Int32"),
            "trip_type": pd.array([1] * n, dtype="Int32"),
            "passenger_count": pd.array([1] * n, dtype="Int32"),
        }
    )
    frame[TARGET] = 15.0 + rng.normal(0, 3, n)
    return frame[[*MODEL_INPUT_COLUMNS, TARGET]]


def constant_model(path: Path, minutes: float) -> Path:
    table = trips_table()
    model = DummyRegressor(strategy="constant", constant=minutes).fit(table[list(MODEL_INPUT_COLUMNS)], table[TARGET])
    joblib.dump(model, path)
    return path


def constant_metadata(minutes: float, table: pd.DataFrame) -> ModelMetadata:
    rmse = float(np.sqrt(np.mean((table[TARGET] - minutes) ** 2)))
    return metadata_for({"test": {"rmse": rmse}, "baseline_test": {"rmse": 1e9}}, algorithm=f"constant {minutes}")


def _register(root: str, minutes: float, key: str, report: str, scratch: str | None = None) -> None:
    table = trips_table()
    model = constant_model(Path(scratch or root) / f"m-{key}.joblib", minutes)
    register_with_gate(ModelRegistry(root, "race"), model, Path(report), constant_metadata(minutes, table), table, key)


@pytest.fixture(params=["local", "s3"])
def registry_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A registry in a local folder, or under a prefix of a fresh moto bucket (conditional writes, no lock)."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_env").url("registry")


def test_racing_registrations_get_distinct_versions_and_a_consistent_pointer(tmp_path, registry_root):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html></html>")
    minutes = [5.0, 15.0, 10.0, 20.0, 14.0, 16.0, 30.0, 15.2]
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_register, args=(registry_root, m, f"k{i}", str(report), str(tmp_path)))
        for i, m in enumerate(minutes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    registry = ModelRegistry(registry_root, "race")
    versions = registry.versions()
    assert len(versions) == len(minutes) == len(set(versions))
    pointer = registry.production()
    best = min(versions, key=lambda v: registry.metadata(v)["metrics"]["test"]["rmse"])
    assert pointer["version"] == best, "production must be the best model, whatever the order of the race"
    registry.verify(pointer["version"])
    history, problems = registry.history()
    assert problems == []
    rmses = [registry.metadata(h["version"])["metrics"]["test"]["rmse"] for h in history]
    assert rmses == sorted(rmses, reverse=True), "each promotion beat the production model it replaced"


def _crash_while_promoting(root: str, report: str) -> None:
    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies between writing the temp file and the rename

    local_storage.os.replace = die
    _register(root, 14.9, "crash", report)


def test_crash_during_promotion_leaves_the_previous_production_model(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    _register(str(tmp_path), 20.0, "first", str(report))
    registry = ModelRegistry(tmp_path, "race")
    assert registry.production()["version"] == "v0001"
    proc = multiprocessing.get_context("fork").Process(target=_crash_while_promoting, args=(str(tmp_path), str(report)))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    pointer = registry.production()  # still valid JSON, still the previous model
    assert pointer["version"] == "v0001"
    registry.load_model()
    leftovers = [p for p in registry.home.iterdir() if local_storage.is_temporary(p.name)]
    assert leftovers, "the killed promotion left its temporary file (swept by the next run)"
    assert registry.sweep_orphans() and not [p for p in registry.home.iterdir() if local_storage.is_temporary(p.name)]
    # the rerun of the interrupted registration completes the promotion it had decided
    _register(str(tmp_path), 14.9, "crash", str(report))
    assert registry.production()["version"] == "v0002"


@pytest.mark.slow
def test_tampered_production_model_is_refused_by_batch_predictions_and_never_unpickled(
    pipeline_env, run_tasks, monkeypatch, caplog
):
    assert run_tasks([TrainingPipeline()]).ok
    registry = ModelRegistry(pipeline_env.registry_dir, "green-trip-duration")
    path = registry.model_path("v0001")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    loaded: list[str] = []
    monkeypatch.setattr(registry_module.joblib, "load", lambda p, *a, **k: loaded.append(str(p)))
    with caplog.at_level("ERROR", logger="luigi-interface"):
        result = run_tasks([BatchPredictions(month=dt.date(2021, 3, 1))])
    assert not result.ok
    assert "does not match metadata" in caplog.text and "refused" in caplog.text
    assert loaded == []
    with pytest.raises(RegistryError, match="sha256"):
        registry.load_model()
