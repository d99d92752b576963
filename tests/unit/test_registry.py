"""The file-based registry: immutable numbered versions, integrity-checked loads, a gated production pointer."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import types
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

import tripduration.io.local as local_storage
import tripduration.registry.store as registry_module
from tripduration.errors import RegistryError
from tripduration.registry.gate import GateDecision, quality_gate
from tripduration.registry.store import ModelRegistry

NAME = "green-trip-duration"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "build" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(DummyRegressor(strategy="constant", constant=12.5).fit(np.zeros((2, 1)), [1.0, 2.0]), path)
    return path


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", NAME)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_creates_v0001_with_checksummed_metadata(registry, model_file, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html></html>")
    assert registry.versions() == []

    version = registry.register(model_file, {"algorithm": "dummy", "metrics": {"rmse": 1.0}}, {"report": report})

    assert version == "v0001"
    assert registry.versions() == ["v0001"]
    folder = registry.versions_dir / "v0001"
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.joblib", "report"]
    assert (folder / "report" / "report.html").read_text() == "<html></html>"
    meta = registry.metadata("v0001")
    assert meta["model_sha256"] == sha256_of(folder / "model.joblib") == sha256_of(model_file)
    assert meta["version"] == "v0001"
    assert meta["name"] == NAME
    assert meta["algorithm"] == "dummy"
    assert meta["registration_key"] is None
    assert meta["registered_at"].endswith("+00:00")
    assert json.loads((folder / "metadata.json").read_text()) == meta
    # no staging folder is left behind
    assert [p.name for p in registry.versions_dir.iterdir()] == ["v0001"]


def test_versions_are_numbered_in_order(registry, model_file):
    assert [registry.register(model_file, {"i": i}) for i in range(3)] == ["v0001", "v0002", "v0003"]
    assert [registry.metadata(v)["i"] for v in registry.versions()] == [0, 1, 2]


def test_register_same_key_twice_returns_the_same_version(registry, model_file):
    first = registry.register(model_file, {"run": 1}, key="run-abc")
    second = registry.register(model_file, {"run": 2}, key="run-abc")
    other = registry.register(model_file, {"run": 3}, key="run-def")
    assert first == second == "v0001"
    assert other == "v0002"
    assert registry.versions() == ["v0001", "v0002"]
    assert registry.metadata("v0001")["run"] == 1  # the version is immutable
    assert registry.find_by_key("run-abc") == "v0001"
    assert registry.find_by_key("nope") is None


def test_failed_registration_leaves_nothing_behind(registry, tmp_path):
    with pytest.raises(FileNotFoundError):
        registry.register(tmp_path / "absent.joblib", {})
    assert registry.versions() == []
    assert not registry.versions_dir.exists() or list(registry.versions_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "name with space"])
def test_model_name_is_validated(tmp_path, name):
    with pytest.raises(ValueError, match="may only hold"):
        ModelRegistry(tmp_path, name)


def test_metadata_of_missing_version_is_a_registry_error(registry):
    with pytest.raises(RegistryError, match="version 'v0042' does not exist"):
        registry.metadata("v0042")


@pytest.mark.parametrize(
    ("candidate", "baseline", "production", "promote", "reason"),
    [
        (4.0, 5.0, None, True, "beats baseline 5.0000 and no production model yet"),
        (4.0, 5.0, 4.5, True, "beats baseline 5.0000 and production 4.5000"),
        (5.0, 5.0, None, False, "does not beat the baseline's 5.0000"),
        (6.0, 5.0, None, False, "does not beat the baseline's"),
        (6.0, 5.0, 3.0, False, "does not beat the baseline's"),  # the baseline is checked first
        (4.0, 5.0, 4.0, False, "does not beat the production model's 4.0000"),
        (4.0, 5.0, 3.5, False, "does not beat the production model's 3.5000"),
        (float("nan"), 5.0, None, False, "does not beat the baseline's"),
        (4.0, 5.0, float("nan"), False, "does not beat the production model's"),
    ],
)
def test_quality_gate(candidate, baseline, production, promote, reason):
    decision = quality_gate(candidate, baseline, production)
    assert isinstance(decision, GateDecision)
    assert decision.promote is promote
    assert reason in decision.reason


def test_set_production_writes_pointer_and_appends_history(registry, model_file):
    v1 = registry.register(model_file, {"metrics": {"test": {"rmse": 4.0}}})
    v2 = registry.register(model_file, {"metrics": {"test": {"rmse": 3.0}}})
    assert registry.production() is None

    with registry.lock():
        first = registry.set_production(v1, "first model")
    pointer = json.loads(registry.production_file.read_text())
    assert pointer == first == registry.production()
    assert pointer["version"] == "v0001"
    assert pointer["previous_version"] is None
    assert pointer["action"] == "promote"
    assert pointer["reason"] == "first model"
    assert pointer["model_sha256"] == registry.metadata(v1)["model_sha256"]
    assert pointer["metrics"] == {"test": {"rmse": 4.0}}

    with registry.lock():
        registry.set_production(v2, "better")
        registry.set_production(v1, "v0002 misbehaves", action="rollback")
    history = [json.loads(line) for line in registry.history_file.read_text().splitlines()]
    assert [(h["version"], h["previous_version"], h["action"]) for h in history] == [
        ("v0001", None, "promote"),
        ("v0002", "v0001", "promote"),
        ("v0001", "v0002", "rollback"),
    ]
    assert registry.production()["version"] == "v0001"
    assert not [p for p in registry.home.iterdir() if local_storage.is_temporary(p.name)]  # no temporary file


def test_set_production_of_unknown_version_changes_nothing(registry, model_file):
    registry.register(model_file, {})
    with pytest.raises(RegistryError):
        registry.set_production("v0009", "typo")
    assert registry.production() is None
    assert not registry.history_file.exists()


def test_load_model_checks_the_checksum(registry, model_file):
    version = registry.register(model_file, {"metrics": {}})
    model, meta = registry.load_model(version)
    assert model.predict(np.zeros((3, 1))).tolist() == [12.5] * 3
    assert meta["version"] == version

    with pytest.raises(RegistryError, match="no production model"):
        registry.load_model()
    with registry.lock():
        registry.set_production(version, "test")
    model, meta = registry.load_model()
    assert meta["version"] == version


def test_load_model_refuses_a_tampered_file_before_unpickling(registry, model_file, monkeypatch):
    version = registry.register(model_file, {})
    path = registry.model_path(version)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    def forbidden_load(*_args: object, **_kwargs: object) -> None:
        pytest.fail("joblib.load was called on a file that failed its checksum")

    monkeypatch.setattr(registry_module, "joblib", types.SimpleNamespace(load=forbidden_load))
    with pytest.raises(RegistryError, match=rf"{path}: sha256 [0-9a-f]{{64}} does not match metadata"):
        registry.load_model(version)


def test_load_model_refuses_a_replaced_file(registry, model_file, monkeypatch, tmp_path):
    version = registry.register(model_file, {})
    other = tmp_path / "other.joblib"
    joblib.dump(DummyRegressor(strategy="constant", constant=99.0).fit(np.zeros((2, 1)), [1.0, 2.0]), other)
    registry.model_path(version).write_bytes(other.read_bytes())
    monkeypatch.setattr(registry_module, "joblib", types.SimpleNamespace(load=lambda *a, **k: pytest.fail("loaded")))
    with pytest.raises(RegistryError, match="was changed after registration"):
        registry.load_model(version)


def _register_many(root: str, model_file: str, worker: int, count: int, barrier) -> None:
    registry = ModelRegistry(root, NAME)
    barrier.wait(timeout=10)
    for i in range(count):
        registry.register(model_file, {"worker": worker, "i": i})


def test_concurrent_registrations_get_distinct_versions(registry, model_file):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(target=_register_many, args=(str(registry.root), str(model_file), w, 5, barrier)) for w in (0, 1)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=30)
    assert [p.exitcode for p in workers] == [0, 0]

    versions = registry.versions()
    assert versions == [f"v{i:04d}" for i in range(1, 11)]
    metas = [registry.metadata(v) for v in versions]
    assert [m["version"] for m in metas] == versions  # each folder's metadata names that folder
    assert sorted((m["worker"], m["i"]) for m in metas) == [(w, i) for w in (0, 1) for i in range(5)]
    assert not [p for p in registry.versions_dir.iterdir() if local_storage.is_temporary(p.name)]


def test_versions_beyond_9999_sort_numerically(registry, model_file, monkeypatch):
    for number in (9998, 9999, 10000):
        folder = registry.versions_dir / f"v{number}"
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps({"version": f"v{number}"}))
    assert registry.versions() == ["v9998", "v9999", "v10000"]

    # stop register's retry loop after a few attempts instead of hanging
    real_rename, attempts = local_storage.os.rename, []

    def bounded_rename(src, dst):
        attempts.append(dst)
        if len(attempts) > 3:
            raise RuntimeError(f"register keeps retrying {Path(dst).name}")
        return real_rename(src, dst)

    monkeypatch.setattr(local_storage.os, "rename", bounded_rename)
    assert registry.register(model_file, {}) == "v10001"
