"""Registry safety on a storage shared by several hosts, through the one registry code path: version folders
claimed create-only, a production pointer swapped with compare-and-swap, history entries never lost. The same
tests on a local folder and on the moto S3 server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tripduration.io import open_spec
from tripduration.io.storage import Storage
from tripduration.registry.store import ModelRegistry

NAME = "green-trip-duration"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"model bytes")
    return path


def test_versions_are_numbered_and_complete_only_with_their_metadata(store: Storage, model_file, tmp_path) -> None:
    registry = ModelRegistry(store, NAME)
    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text("{}")
    assert registry.register(model_file, {"rmse": 5.0}, {"report": report}) == "v0001"
    assert registry.register(model_file, {"rmse": 4.0}) == "v0002"
    assert registry.versions() == ["v0001", "v0002"]
    assert registry.metadata("v0001")["rmse"] == 5.0
    assert store.read_bytes(f"{NAME}/versions/v0001/report/metrics.json") == b"{}"
    assert "report/metrics.json" in registry.version_files("v0001")


def test_a_claimed_but_unfinished_version_is_skipped_and_numbered_above(store: Storage, model_file) -> None:
    """A host killed after its claim (object storage) or a stray folder (disk): readers do not list it, the
    next registration takes the number above, and ``models`` reports it."""
    store.write_bytes(f"{NAME}/versions/v0001/model.joblib", b"half a registration")
    registry = ModelRegistry(store, NAME)
    assert registry.versions() == [] and registry.incomplete_versions() == ["v0001"]
    assert registry.register(model_file, {}) == "v0002"
    assert registry.versions() == ["v0002"]
    problems = [p["problem"] for p in registry.inventory()["problems"]]
    assert any("v0001" in p and "metadata.json: missing" in p for p in problems), problems


def test_a_second_writer_of_the_same_folder_is_refused(store: Storage) -> None:
    with store.writing("versions/v0001", folder=True, exclusive=True, last="metadata.json") as tmp:
        (tmp / "metadata.json").write_text("{}")
    with pytest.raises(FileExistsError), store.writing("versions/v0001", folder=True, exclusive=True) as tmp:
        (tmp / "metadata.json").write_text('{"other": 1}')
    assert store.read_bytes("versions/v0001/metadata.json") == b"{}"


def test_pointer_update_decides_on_the_pointer_it_replaces(store: Storage, model_file) -> None:
    registry = ModelRegistry(store, NAME)
    versions = [registry.register(model_file, {"rmse": rmse}) for rmse in (5.0, 6.0, 4.0)]

    def better(rmse: float):
        def recheck(current: dict[str, Any] | None) -> tuple[bool, str]:
            if current is None:
                return True, "first"
            theirs = registry.metadata(current["version"])["rmse"]
            return rmse < theirs, f"{rmse} vs {theirs}"

        return recheck

    assert registry.set_production(versions[0], "x", recheck=better(5.0))["previous_version"] is None
    assert registry.set_production(versions[1], "x", recheck=better(6.0)) is None  # worse: nothing written
    written = registry.set_production(versions[2], "x", recheck=better(4.0))
    assert written is not None and written["previous_version"] == "v0001" and written["reason"] == "4.0 vs 5.0"
    assert registry.production()["version"] == "v0003"
    assert [e["version"] for e in registry.history()[0]] == ["v0001", "v0003"]


# --------------------------------------------------------------------------- the race
RMSES = [5.0, 3.0, 7.0, 1.0, 6.0, 2.0, 8.0, 4.0]


def _register_and_promote(
    spec: dict[str, Any], rmse: float, model: Path, start: threading.Barrier, swaps: list, lock: threading.Lock
) -> str:
    registry = ModelRegistry(open_spec(spec), NAME)  # what another host builds from the same configured URL
    version = registry.register(model, {"rmse": rmse})
    start.wait()  # all eight promote at once

    def recheck(current: dict[str, Any] | None) -> tuple[bool, str]:
        time.sleep(0.02)  # a slow host: widens the window between reading the pointer and writing it
        if current is not None and registry.metadata(current["version"])["rmse"] <= rmse:
            return False, "not better"
        return True, f"rmse {rmse}"

    written = registry.set_production(version, "race", recheck=recheck)
    if written is not None:
        with lock:
            swaps.append(written)
    return version


def test_eight_concurrent_registrations_lose_nothing(store: Storage, model_file) -> None:
    """8 hosts register and promote at once: 8 distinct complete versions, and the history is one chain where
    every promotion replaced exactly the pointer it compared itself with (no lost update, no lost entry)."""
    swaps: list[dict[str, Any]] = []
    versions: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(RMSES))
    errors: list[BaseException] = []

    def host(rmse: float) -> None:
        try:
            version = _register_and_promote(store.spec(), rmse, model_file, start, swaps, lock)
            with lock:
                versions.append(version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=host, args=(rmse,)) for rmse in RMSES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors

    registry = ModelRegistry(store, NAME)
    assert sorted(versions) == registry.versions() == [f"v{n:04d}" for n in range(1, 9)]
    rmse_of = {v: registry.metadata(v)["rmse"] for v in versions}
    final = registry.production()
    assert final is not None and rmse_of[final["version"]] == min(RMSES)

    history, problems = registry.history()
    assert not problems
    assert sorted(e["version"] for e in history) == sorted(s["version"] for s in swaps)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    # each entry replaced the one before it, and each was better than the one it replaced
    previous = None
    for entry in history:
        assert entry["previous_version"] == previous
        assert previous is None or rmse_of[entry["version"]] < rmse_of[previous]
        previous = entry["version"]
    assert previous == final["version"]


def test_concurrent_log_appends_get_distinct_sequence_numbers(store: Storage) -> None:
    start = threading.Barrier(8)

    def append(i: int) -> None:
        other = open_spec(store.spec())
        start.wait()
        for j in range(5):
            other.append_log("events.jsonl", {"writer": i, "n": j})

    threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    entries = [json.loads(line) for line in store.read_log("events.jsonl")]
    assert sorted(e["seq"] for e in entries) == list(range(1, 41))
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert sorted((e["writer"], e["n"]) for e in entries) == [(i, j) for i in range(8) for j in range(5)]


def test_a_unique_log_entry_is_appended_once(store: Storage) -> None:
    assert store.append_log("decisions.jsonl", {"x": 1}, unique="2021-04")["seq"] == 1
    assert store.append_log("decisions.jsonl", {"x": 2}, unique="2021-04") is None
    assert store.append_log("decisions.jsonl", {"x": 3}, unique="2021-05")["seq"] == 2
    assert [json.loads(line)["x"] for line in store.read_log("decisions.jsonl")] == [1, 3]
