"""Registry safety on a storage shared by several hosts: version numbers claimed create-only, a production
pointer swapped with compare-and-swap. Same tests on a local folder and on the moto S3 server."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tripduration.io.storage import (
    COMPLETE_FLAG,
    LocalStorage,
    S3Storage,
    Storage,
    complete_versions,
    finish_version,
    list_version_numbers,
    next_version_create,
    read_pointer,
    update_pointer,
)

PREFIX = "green-trip-duration"
POINTER = f"{PREFIX}/production.json"


def test_versions_are_numbered_and_complete(store: Storage) -> None:
    v1 = next_version_create(store, PREFIX, {"model.joblib": b"m1", "report/metrics.json": b"{}"}, {"rmse": 5.0})
    v2 = next_version_create(store, PREFIX, {"model.joblib": b"m2"}, {"rmse": 4.0})
    assert (v1, v2) == ("v0001", "v0002")
    assert complete_versions(store, PREFIX) == ["v0001", "v0002"]
    meta = json.loads(store.read_bytes(f"{PREFIX}/versions/v0001/metadata.json"))
    assert meta["version"] == "v0001" and meta["rmse"] == 5.0
    assert meta["files"]["model.joblib"] == hashlib.sha256(b"m1").hexdigest()
    assert store.read_bytes(f"{PREFIX}/versions/v0001/report/metrics.json") == b"{}"


def test_a_claimed_but_unfinished_version_is_skipped_and_can_be_finished(store: Storage) -> None:
    """A host killed after its claim: readers do not list the version, the next one takes a new number,
    and the same registration (same payloads) can finish it."""
    claim = {"version": "v0001", "files": {"model.joblib": hashlib.sha256(b"m1").hexdigest()}}
    assert store.create_exclusive(f"{PREFIX}/versions/v0001/metadata.json", json.dumps(claim).encode())
    assert complete_versions(store, PREFIX) == []
    assert next_version_create(store, PREFIX, {"model.joblib": b"m2"}) == "v0002"
    assert complete_versions(store, PREFIX) == ["v0002"]
    with pytest.raises(ValueError, match=r"v0001/model\.joblib: content differs"):
        finish_version(store, PREFIX, "v0001", {"model.joblib": b"something else"})
    finish_version(store, PREFIX, "v0001", {"model.joblib": b"m1"})
    assert complete_versions(store, PREFIX) == ["v0001", "v0002"]
    assert list_version_numbers(store, PREFIX) == [1, 2]


def test_reserved_payload_names_are_refused(store: Storage) -> None:
    with pytest.raises(ValueError, match=r"metadata\.json"):
        next_version_create(store, PREFIX, {"metadata.json": b"{}"})
    with pytest.raises(ValueError, match=COMPLETE_FLAG):
        next_version_create(store, PREFIX, {COMPLETE_FLAG: b""})


def test_pointer_update_decides_on_the_pointer_it_replaces(store: Storage) -> None:
    def better(rmse: float, version: str):
        def decide(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is not None and current["rmse"] <= rmse:
                return None
            return {"version": version, "rmse": rmse, "previous": current and current["version"]}

        return decide

    assert update_pointer(store, POINTER, better(5.0, "v0001"))[0] == {
        "version": "v0001",
        "rmse": 5.0,
        "previous": None,
    }
    written, seen = update_pointer(store, POINTER, better(6.0, "v0002"))
    assert written is None and seen is not None and seen["version"] == "v0001"
    written, _ = update_pointer(store, POINTER, better(4.0, "v0003"))
    assert written == {"version": "v0003", "rmse": 4.0, "previous": "v0001"}
    assert read_pointer(store, POINTER)[0] == written


# --------------------------------------------------------------------------- the race
RMSES = [5.0, 3.0, 7.0, 1.0, 6.0, 2.0, 8.0, 4.0]


def _new_storage_like(store: Storage) -> Storage:
    """What another host would build from the same configured URL (its own client / file handles)."""
    if isinstance(store, S3Storage):
        return S3Storage(store.url_for("x")[: -len("/x")])
    assert isinstance(store, LocalStorage)
    return LocalStorage(store.root)


def _register_and_promote(
    store: Storage, rmse: float, start: threading.Barrier, swaps: list[dict[str, Any]], lock: threading.Lock
) -> str:
    version = next_version_create(store, PREFIX, {"model.joblib": f"model {rmse}".encode()}, {"rmse": rmse})
    start.wait()  # all eight promote at once

    def decide(current: dict[str, Any] | None) -> dict[str, Any] | None:
        time.sleep(0.02)  # a slow host: widens the window between reading the pointer and writing it
        if current is not None and current["rmse"] <= rmse:
            return None
        return {"version": version, "rmse": rmse, "previous": current}

    written, _ = update_pointer(store, POINTER, decide)
    if written is not None:
        with lock:
            swaps.append(written)
    return version


def test_eight_concurrent_registrations_lose_nothing(store: Storage) -> None:
    """8 hosts register and promote at once: 8 distinct complete versions, and the pointer's history is one
    chain where every promotion replaced exactly the pointer it compared itself with (no lost update)."""
    swaps: list[dict[str, Any]] = []
    versions: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(RMSES))
    errors: list[BaseException] = []

    def host(rmse: float) -> None:
        try:
            version = _register_and_promote(_new_storage_like(store), rmse, start, swaps, lock)
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

    assert sorted(versions) == [f"v{n:04d}" for n in range(1, 9)]
    assert complete_versions(store, PREFIX) == sorted(versions)
    by_version = {v: json.loads(store.read_bytes(f"{PREFIX}/versions/{v}/metadata.json"))["rmse"] for v in versions}
    final, _ = read_pointer(store, POINTER)
    assert final is not None and final["rmse"] == min(RMSES) == by_version[final["version"]]

    # each promotion's "previous" is the pointer it replaced: following the chain back from the final
    # pointer must visit every successful promotion exactly once, each better than the one it replaced
    chain = []
    node: dict[str, Any] | None = final
    while node is not None:
        chain.append(node)
        assert node["previous"] is None or node["rmse"] < node["previous"]["rmse"]
        node = node["previous"]
    assert sorted(s["version"] for s in swaps) == sorted(n["version"] for n in chain)
    assert [json.dumps(s, sort_keys=True) for s in sorted(swaps, key=lambda s: -s["rmse"])] == [
        json.dumps(n, sort_keys=True) for n in reversed(chain)
    ]


def test_local_pointer_lock_file_is_beside_the_pointer(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    update_pointer(store, POINTER, lambda current: {"version": "v0001"})
    update_pointer(store, POINTER, lambda current: {"version": "v0002"})
    assert sorted(p.name for p in (tmp_path / PREFIX).iterdir()) == [".production.json.storage-lock", "production.json"]
