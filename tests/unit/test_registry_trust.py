"""The registry loads only what it wrote (issue 10 §2) and says what each version is (issues 11 §5, 15 §6).

A "trap" pickle creates a marker file when it is unpickled: a test that finds the marker has seen the
registry run code from a file it should have refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from luigi.cmdline_parser import CmdlineParser
from sklearn.dummy import DummyRegressor

import tripduration.registry.store as registry_module
from tasks import BatchPredictions
from tests.metadata import metadata_for
from tripduration.errors import RegistryError
from tripduration.registry.registration import register_with_gate
from tripduration.registry.store import ModelRegistry

NAME = "green-trip-duration"
NOT_A_VERSION = "not a registry version name"


class Trap:
    """Unpickling it touches ``marker``: the stand-in for code an attacker's pickle would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "build" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(DummyRegressor(strategy="constant", constant=12.5).fit(np.zeros((2, 1)), [1.0, 2.0]), path)
    return path


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", NAME)


def gate(promote: bool, reason: str) -> dict[str, Any]:
    return {"promote": promote, "reason": reason}


def with_production(registry: ModelRegistry, model_file: Path) -> str:
    """v0001 registered with a passing gate and promoted."""
    version = registry.register(model_file, {"gate": gate(True, "first")})
    with registry.lock():
        registry.set_production(version, "first")
    return version


def write_trap(path: Path, marker: Path) -> str:
    """A pickle that runs code when loaded, at ``path``; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Trap(marker), path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pointer(registry: ModelRegistry, payload: Any) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    registry.production_file.write_text(text)


# --------------------------------------------------------------------------- 1. version names
@pytest.mark.parametrize("name", ["v0001", "v0042", "v9999", "v10000", "v123456"])
def test_valid_version_names_are_accepted(registry, model_file, name):
    assert registry_module.check_version(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "v0001/../v0001",
        "../../../x",
        "/etc/passwd",
        "v0001/",
        "v001",
        "v00001",  # a second spelling of v0001
        "V0001",
        "v0001\n",
        "v\u0660\u0660\u0660\u0661",  # Arabic-Indic digits match \d but are not a version
        "",
        "..",
    ],
)
def test_every_registry_entry_refuses_a_bad_version_name_before_building_a_path(registry, model_file, name):
    """``metadata``, ``load_model``, ``verify``, ``read_file``, ``model_path``, ``rollback``, ``set_production``."""
    with_production(registry, model_file)
    calls = {
        "metadata": lambda: registry.metadata(name),
        "load_model": lambda: registry.load_model(name),
        "verify": lambda: registry.verify(name),
        "read_file": lambda: registry.read_file(name, "metadata.json"),
        "model_path": lambda: registry.model_path(name),
        "rollback": lambda: registry.rollback(name, "r"),
        "set_production": lambda: registry.set_production(name, "r"),
    }
    for entry, call in calls.items():
        with pytest.raises(ValueError, match=NOT_A_VERSION) as caught:
            call()
        assert isinstance(caught.value, RegistryError), entry
        assert repr(name) in str(caught.value) and "v0001" in str(caught.value), entry
    assert registry.production()["version"] == "v0001"


def test_a_version_path_that_leads_back_into_the_registry_is_still_refused(registry, model_file):
    """``v0001/../v0001`` names a real folder: the old code accepted it for rollback."""
    with_production(registry, model_file)
    with pytest.raises(ValueError, match=NOT_A_VERSION):
        registry.rollback("v0001/../v0001", "sneaky")
    history = registry.history_file.read_text().splitlines()
    assert len(history) == 1


def test_a_pointer_leading_outside_the_registry_is_not_followed(registry, model_file, marker, tmp_path):
    """The attack of issue 10: production.json names ``../../../x`` where a consistent pickle waits."""
    with_production(registry, model_file)
    outside = tmp_path / "x"
    sha = write_trap(outside / "model.joblib", marker)
    (outside / "metadata.json").write_text(json.dumps({"model_sha256": sha, "name": NAME}))
    assert (registry.versions_dir / "../../../x").resolve() == outside.resolve()
    write_pointer(registry, {"version": "../../../x", "model_sha256": sha})

    with pytest.raises(RegistryError, match="rollback vNNNN") as caught:
        registry.load_model()
    assert str(registry.production_file) in str(caught.value) and "'../../../x'" in str(caught.value)
    assert not marker.exists(), "the pickle outside the registry was unpickled"


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_an_explicit_version_outside_the_registry_is_not_loaded(registry, tmp_path, marker, kind):
    registry.versions_dir.mkdir(parents=True)  # so that a relative path through it resolves
    target = tmp_path / "elsewhere"
    version = str(target) if kind == "absolute" else os.path.relpath(target, registry.versions_dir)
    sha = write_trap(target / "model.joblib", marker)
    (target / "metadata.json").write_text(json.dumps({"model_sha256": sha}))
    with pytest.raises(ValueError, match=NOT_A_VERSION):
        registry.load_model(version)
    assert not marker.exists()


def test_model_version_parameter_refuses_a_path_when_the_task_is_built():
    with pytest.raises(ValueError, match=rf"'\.\./x' is {NOT_A_VERSION}.*'production'"):
        BatchPredictions(month=dt.date(2021, 3, 1), model_version="../x")
    args = ["BatchPredictions", "--month", "2021-03", "--model-version", "v0001/../v0001"]
    with pytest.raises(ValueError, match=NOT_A_VERSION), CmdlineParser.global_instance(args) as parser:
        parser.get_task_obj()
    assert BatchPredictions(month=dt.date(2021, 3, 1), model_version="v0002").model_version == "v0002"
    assert BatchPredictions(month=dt.date(2021, 3, 1)).model_version == "production"


# --------------------------------------------------------------------------- 2. sha256 in pointer and metadata
def test_a_pointer_whose_sha256_does_not_match_the_model_is_refused(registry, model_file, monkeypatch):
    with_production(registry, model_file)
    pointer = registry.production()
    pointer["model_sha256"] = "0" * 64
    write_pointer(registry, pointer)
    monkeypatch.setattr(registry_module.joblib, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(RegistryError, match=r"production\.json recorded") as caught:
        registry.load_model()
    assert str(registry.model_path("v0001")) in str(caught.value)


def test_replacing_model_and_metadata_together_is_refused_via_the_pointer(registry, model_file, marker):
    version = with_production(registry, model_file)
    sha = write_trap(registry.model_path(version), marker)
    meta_path = registry.versions_dir / version / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model_sha256"] = sha
    meta_path.write_text(json.dumps(meta))

    for load in (registry.load_model, lambda: registry.load_model(version), lambda: registry.verify(version)):
        with pytest.raises(RegistryError, match="were both replaced"):
            load()
    assert not marker.exists(), "a model that matched only its (replaced) metadata was unpickled"


def test_the_model_is_unpickled_from_the_bytes_that_were_hashed(registry, model_file, marker, monkeypatch):
    """A file swapped between the check and the load must not be what gets unpickled."""
    version = with_production(registry, model_file)
    real_load = joblib.load

    def swap_then_load(source: Any, *args: Any, **kwargs: Any) -> Any:
        write_trap(registry.model_path(version), marker)  # the swap lands right after the check
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(registry_module.joblib, "load", swap_then_load)
    model, meta = registry.load_model()
    assert model.predict(np.zeros((1, 1))).tolist() == [12.5]
    assert meta["version"] == version
    assert not marker.exists()


# --------------------------------------------------------------------------- 3. corrupt pointer
BAD_POINTERS = {
    "not JSON": "{not json",
    "a list": "[]",
    "empty": "",
    "version not a string": {"version": 1, "model_sha256": "a" * 64},
    "version a path": {"version": "v0001/../v0001", "model_sha256": "a" * 64},
    "no sha256": {"version": "v0001"},
    "sha256 not hex": {"version": "v0001", "model_sha256": "x" * 64},
    "missing version": {"version": "v0042", "model_sha256": "a" * 64},
    "incomplete version": {"version": "v0002", "model_sha256": "a" * 64},
}


@pytest.mark.parametrize("bad", BAD_POINTERS.values(), ids=BAD_POINTERS.keys())
def test_a_corrupt_pointer_is_named_and_rollback_repairs_it(registry, model_file, bad):
    version = with_production(registry, model_file)
    (registry.versions_dir / "v0002").mkdir()  # an interrupted registration
    write_pointer(registry, bad)

    for read in (registry.production, registry.load_model):
        with pytest.raises(RegistryError) as caught:
            read()
        message = str(caught.value)
        assert message.startswith(f"{registry.production_file}: ") and "`python pipeline.py rollback vNNNN`" in message

    pointer = registry.rollback(version, "repair")
    assert registry.production() == pointer
    assert pointer["version"] == version and pointer["previous_version"] is None
    assert str(registry.production_file) in pointer["previous_pointer_error"]
    registry.load_model()
    history = [json.loads(line) for line in registry.history_file.read_text().splitlines()]
    assert [h["action"] for h in history] == ["promote", "rollback"]


def test_a_gate_decision_against_a_corrupt_pointer_stops_with_the_repair_and_registers_nothing(registry, model_file):
    with_production(registry, model_file)
    write_pointer(registry, '{"version": "v0001", "model_sha256": ')
    metadata = metadata_for({"test": {"rmse": 1.0}, "baseline_test": {"rmse": 2.0}})
    with pytest.raises(RegistryError, match="rollback vNNNN") as caught:
        register_with_gate(registry, model_file, model_file.parent, metadata, pd.DataFrame(), key="k")
    assert str(caught.value).startswith(f"{registry.production_file}: not valid JSON")
    assert registry.versions() == ["v0001"]


# --------------------------------------------------------------------------- 4. incomplete folders, listing
def test_an_incomplete_version_folder_is_skipped_reported_and_kept(registry, model_file, caplog):
    first = registry.register(model_file, {}, key="a")
    stray = registry.versions_dir / "v0002"
    stray.mkdir()
    (stray / "model.joblib").write_bytes(b"half a registration")
    with caplog.at_level(logging.WARNING, logger="tripduration.registry.store"):
        second = registry.register(model_file, {}, key="b")  # the old code failed reading v0002's metadata
    assert (first, second) == ("v0001", "v0003")  # numbered above the stray folder, never onto it
    assert registry.versions() == ["v0001", "v0003"]
    assert registry.incomplete_versions() == ["v0002"]
    assert (stray / "model.joblib").read_bytes() == b"half a registration"  # never deleted
    assert f"{stray}: no metadata.json" in caplog.text
    assert registry.sweep_orphans() == [] and stray.exists()
    assert registry.register(model_file, {}, key="a") == "v0001"  # the idempotency key still works


def test_inventory_lists_what_is_valid_and_names_what_is_not(registry, model_file):
    with_production(registry, model_file)
    registry.register(model_file, {"gate": gate(False, "worse")})  # v0002, fine
    (registry.versions_dir / "v0003").mkdir()  # incomplete
    registry.register(model_file, {})  # v0004: metadata made unreadable below
    (registry.versions_dir / "v0004" / "metadata.json").write_text("{oops")
    registry.register(model_file, {})  # v0005: model changed below
    registry.model_path("v0005").write_bytes(b"changed")
    (registry.versions_dir / "backup").mkdir()
    shutil.copytree(registry.versions_dir / "v0001", registry.versions_dir / "v0006")  # a copy, not a registration
    registry.history_file.write_text(registry.history_file.read_text() + "garbage\n")

    inventory = registry.inventory()
    assert [(r["version"], r["status"]) for r in inventory["versions"]] == [
        ("v0001", "production"),
        ("v0002", "rejected"),
    ]
    problems = "\n".join(p["problem"] for p in inventory["problems"])
    assert f"{registry.versions_dir / 'v0003' / 'metadata.json'}: missing" in problems
    assert f"{registry.versions_dir / 'v0004' / 'metadata.json'}: not valid JSON" in problems
    assert f"{registry.model_path('v0005')}: sha256" in problems and "does not match metadata" in problems
    assert f"{registry.versions_dir / 'backup'}: not a version name" in problems
    assert f"{registry.history_file} line 2: not valid JSON" in problems
    assert f"{registry.versions_dir / 'v0006' / 'metadata.json'}: describes version 'v0001'" in problems
    assert len(inventory["problems"]) == 6
    assert registry.listing() == inventory["versions"]


def test_inventory_with_a_corrupt_pointer_still_lists_the_versions(registry, model_file):
    with_production(registry, model_file)
    write_pointer(registry, "{")
    inventory = registry.inventory()
    assert [r["version"] for r in inventory["versions"]] == ["v0001"]
    assert inventory["versions"][0]["status"] == "retired"  # was production; nothing serves now
    assert [p["path"] for p in inventory["problems"]] == [str(registry.production_file)]
    assert "rollback vNNNN" in inventory["problems"][0]["problem"]


# --------------------------------------------------------------------------- 5. retired, 6. forced rollback
def test_a_replaced_production_version_is_retired_and_keeps_its_gate_reason(registry, model_file):
    registry.register(model_file, {"gate": gate(True, "RMSE 5.0 beats baseline 6.0 and no production model yet")})
    registry.register(model_file, {"gate": gate(True, "RMSE 4.0 beats baseline 6.0 and production 5.0")})
    registry.register(model_file, {"gate": gate(True, "RMSE 3.9 beats baseline 6.0 and production 5.0")})
    with registry.lock():
        registry.set_production("v0001", "promote 1")
        registry.set_production("v0002", "promote 2")
    rows = {r["version"]: r for r in registry.listing()}
    assert rows["v0001"]["status"] == "retired"
    assert rows["v0001"]["gate_reason"] == "RMSE 5.0 beats baseline 6.0 and no production model yet"
    assert rows["v0002"]["status"] == "production" and rows["v0002"]["rollback_reason"] is None
    assert rows["v0003"]["status"] == "challenger"  # passed the gate, never served (e.g. interrupted promotion)


def test_rollback_to_a_gate_rejected_version_needs_force_and_is_shown(registry, model_file):
    with_production(registry, model_file)
    registry.register(model_file, {"gate": gate(False, "RMSE 5.5 does not beat the production model's 5.4")})
    before = registry.history_file.read_text()
    with pytest.raises(RegistryError, match=r"v0002 was rejected by the quality gate \(RMSE 5\.5.*add --force"):
        registry.rollback("v0002", "drill")
    assert registry.production()["version"] == "v0001" and registry.history_file.read_text() == before

    pointer = registry.rollback("v0002", "drill: serve the challenger", force=True)
    assert pointer["forced"] is True and pointer["gate_reason"].startswith("RMSE 5.5")
    rows = {r["version"]: r for r in registry.listing()}
    assert rows["v0002"]["status"] == "production"
    assert rows["v0002"]["gate_reason"].startswith("RMSE 5.5")
    assert rows["v0002"]["rollback_reason"] == "drill: serve the challenger" and rows["v0002"]["forced"]
    assert rows["v0001"]["status"] == "retired"
