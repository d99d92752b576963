"""The Storage contract, continued (test_storage.py holds the first part): the operations callers rely on
beyond read/write/CAS, each run against a local folder and the moto S3 server with the same test.

writing() (a file, a folder, exclusive, ``last``), folder_exists, children (the root too), change_token,
identity/confirms, local_copy (a file, a folder, a stale identity), append_log/read_log (``unique``,
concurrent appenders), spec/open_spec, where(), sweep_orphans.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.storage.conftest import S3Env
from tripduration.io import open_spec
from tripduration.io.local import LocalStorage
from tripduration.io.s3 import S3Storage
from tripduration.io.storage import ObjectUrl, Storage, StorageError


def _fill(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


FILES = {"metadata.json": b"{}", "model.joblib": b"model", "report/plot.png": b"png"}


# --------------------------------------------------------------------------- writing()
def test_writing_a_file_publishes_only_when_the_block_succeeds(store: Storage) -> None:
    with store.writing("out/summary.json") as tmp:
        tmp.write_bytes(b"first")
        assert not store.exists("out/summary.json")  # nothing visible while it is written
    assert store.read_bytes("out/summary.json") == b"first"
    with pytest.raises(RuntimeError, match="writer failed"), store.writing("out/summary.json") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert store.read_bytes("out/summary.json") == b"first"
    assert store.list() == ["out/summary.json"]


def test_writing_a_folder_publishes_it_whole_and_a_rewrite_replaces_it(store: Storage) -> None:
    assert not store.folder_exists("report")
    with pytest.raises(RuntimeError), store.writing("report", folder=True) as tmp:
        _fill(tmp, {"a.txt": b"a"})
        raise RuntimeError("killed")
    assert not store.folder_exists("report") and store.list("report/a") == []
    with store.writing("report", folder=True) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        _fill(tmp, {"a.txt": b"a1", "old/b.txt": b"b1"})
        assert not store.folder_exists("report")
    assert store.folder_exists("report")
    with store.writing("report", folder=True) as tmp:
        _fill(tmp, {"a.txt": b"a2", "c.txt": b"c2"})
    assert store.folder_exists("report")
    assert store.read_bytes("report/a.txt") == b"a2" and store.read_bytes("report/c.txt") == b"c2"
    assert not store.exists("report/old/b.txt")  # nothing of the first folder is left


def test_writing_exclusive_file_refuses_an_existing_key(store: Storage) -> None:
    with store.writing("claims/one", exclusive=True) as tmp:
        tmp.write_bytes(b"mine")
    with pytest.raises(FileExistsError), store.writing("claims/one", exclusive=True) as tmp:
        tmp.write_bytes(b"theirs")
    assert store.read_bytes("claims/one") == b"mine"


def test_writing_exclusive_folder_with_last_file(store: Storage) -> None:
    with store.writing("versions/v0001", folder=True, exclusive=True, last="metadata.json") as tmp:
        _fill(tmp, FILES)
    with (
        pytest.raises(FileExistsError),
        store.writing("versions/v0001", folder=True, exclusive=True, last="metadata.json") as tmp,
    ):
        _fill(tmp, {"metadata.json": b'{"other": 1}'})
    assert {name: store.read_bytes(f"versions/v0001/{name}") for name in FILES} == FILES
    assert store.children("versions") == ["v0001"]


def test_exclusive_folder_on_s3_uploads_the_last_file_last(s3_env: S3Env) -> None:
    """A local folder appears by one rename; on S3 the files go one by one and ``last`` says it is complete."""
    uploaded: list[str] = []
    real = s3_env.client()

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def upload_file(self, path: str, bucket: str, key: str, *args: object, **kwargs: object) -> None:
            uploaded.append(key.rsplit("/", 1)[-1])
            real.upload_file(path, bucket, key, *args, **kwargs)

    store = S3Storage(s3_env.url("registry"), client=Recording())
    with store.writing("versions/v0001", folder=True, exclusive=True, last="metadata.json") as tmp:
        _fill(tmp, {"a.json": b"1", "metadata.json": b"{}", "z.json": b"2"})
    assert uploaded[-1] == "metadata.json" and sorted(uploaded) == ["a.json", "metadata.json", "z.json"]


# --------------------------------------------------------------------------- folders, children
def test_children_are_the_names_directly_under_a_folder_or_the_root(store: Storage) -> None:
    assert store.children("") == [] and store.children("nothing") == []
    store.write_bytes("production.json", b"{}")
    store.write_bytes("versions/v0002/metadata.json", b"{}")
    store.write_bytes("versions/v0001/model.joblib", b"m")
    store.write_bytes("versions/v0001/report/plot.png", b"p")
    assert store.children("") == ["production.json", "versions"]
    assert store.children("versions") == ["v0001", "v0002"]
    assert store.children("versions/v0001") == ["model.joblib", "report"]


def test_children_do_not_show_a_write_in_progress_or_a_lock(store: Storage) -> None:
    store.write_bytes("pointer.json", b"one")
    _, token = store.read_with_token("pointer.json")
    assert store.replace_if("pointer.json", b"two", token)  # takes a lock locally
    with store.writing("versions/v0001", folder=True, exclusive=True) as tmp:
        _fill(tmp, FILES)
        with store.writing("half.json") as half:
            half.write_bytes(b"...")
            # (a local folder's parent folders appear with its first write: ``versions`` may be listed)
            assert [n for n in store.children("") if n != "versions"] == ["pointer.json"]
            assert store.children("versions") == []


def test_folder_exists_only_for_a_complete_folder(store: Storage) -> None:
    assert not store.folder_exists("out")
    with store.writing("out", folder=True) as tmp:
        _fill(tmp, {"x.txt": b"x"})
    assert store.folder_exists("out")
    assert not store.folder_exists("out/x.txt") and not store.folder_exists("elsewhere")


# --------------------------------------------------------------------------- tokens and identity
def test_change_token_follows_replacements(store: Storage) -> None:
    assert store.change_token("production.json") is None
    store.write_bytes("production.json", b'{"version": "v0001"}')
    first = store.change_token("production.json")
    assert first is not None and store.change_token("production.json") == first  # stable while unchanged
    store.write_bytes("production.json", b'{"version": "v0002", "longer": true}')
    assert store.change_token("production.json") not in (None, first)
    store.delete("production.json")
    assert store.change_token("production.json") is None


def test_identity_names_the_content_and_confirms_its_bytes(store: Storage) -> None:
    assert store.identity("raw/month.parquet") is None
    store.write_bytes("raw/month.parquet", b"first content")
    first = store.identity("raw/month.parquet")
    assert first is not None and store.identity("raw/month.parquet") == first
    digest = hashlib.sha256(store.read_bytes("raw/month.parquet")).hexdigest()
    assert store.confirms(first, digest)
    store.write_bytes("raw/month.parquet", b"other content, same name")
    assert store.identity("raw/month.parquet") not in (None, first)


def test_local_copy_of_a_file_with_its_identity(store: Storage) -> None:
    store.write_bytes("raw/month.parquet", b"bytes of the month")
    identity = store.identity("raw/month.parquet")
    with store.local_copy("raw/month.parquet", identity) as path:
        assert path.name == "month.parquet" and path.read_bytes() == b"bytes of the month"
        assert store.confirms(str(identity), hashlib.sha256(path.read_bytes()).hexdigest())


def test_local_copy_with_a_stale_identity_never_passes_for_the_old_bytes(store: Storage) -> None:
    """The object was replaced after its identity was taken: S3 refuses the read (If-Match); a local reader
    gets the new bytes, which ``confirms`` does not take for the identity's."""
    store.write_bytes("raw/month.parquet", b"when the run started")
    stale = str(store.identity("raw/month.parquet"))
    store.write_bytes("raw/month.parquet", b"replaced during the run")
    try:
        with store.local_copy("raw/month.parquet", stale) as path:
            assert not store.confirms(stale, hashlib.sha256(path.read_bytes()).hexdigest())
    except StorageError as exc:
        assert "changed while the pipeline was running" in str(exc)


def test_local_copy_of_a_folder_holds_exactly_its_files(store: Storage) -> None:
    with store.writing("versions/v0001", folder=True, exclusive=True, last="metadata.json") as tmp:
        _fill(tmp, FILES)
    with store.writing("report", folder=True) as tmp:
        _fill(tmp, {"index.html": b"<p>"})
    for key, files in (("versions/v0001", FILES), ("report", {"index.html": b"<p>"})):
        with store.local_copy(key, folder=True) as folder:
            found = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert found == files, key


# --------------------------------------------------------------------------- the append-only log
def test_append_log_numbers_entries_and_unique_appends_once(store: Storage) -> None:
    assert store.read_log("events.jsonl") == []
    first = store.append_log("events.jsonl", {"event": "promoted"})
    second = store.append_log("events.jsonl", {"event": "monitored"}, unique="2021-04")
    assert first is not None and second is not None and (first["seq"], second["seq"]) == (1, 2)
    assert store.append_log("events.jsonl", {"event": "monitored again"}, unique="2021-04") is None
    entries = [json.loads(line) for line in store.read_log("events.jsonl")]
    assert [(e["seq"], e["event"]) for e in entries] == [(1, "promoted"), (2, "monitored")]
    assert entries[1]["entry"] == "2021-04"


def test_concurrent_appenders_lose_no_entry_and_share_no_number(store: Storage) -> None:
    errors: list[BaseException] = []

    def append(writer: int) -> None:
        try:
            for i in range(5):
                store.append_log("events.jsonl", {"writer": writer, "i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    entries = [json.loads(line) for line in store.read_log("events.jsonl")]
    assert sorted(e["seq"] for e in entries) == list(range(1, 21))
    assert sorted((e["writer"], e["i"]) for e in entries) == [(w, i) for w in range(4) for i in range(5)]


def _kill_mid_append(store: Storage, store_kind: str, unique: str) -> None:
    """What an appender killed half-way leaves: locally a line without its end (a full disk, a crash), on S3
    the claim of its unique name without the entry it was about to write."""
    if store_kind == "local":
        assert isinstance(store, LocalStorage)
        with open(store.path("events.jsonl"), "a") as fh:
            fh.write('{"event": "half-writ')
        return
    real = S3Storage.create_exclusive

    def dies_after_the_claim(self: S3Storage, key: str, data: bytes) -> bool:
        if "/unique/" not in key:
            raise ConnectionError("killed before writing the entry")
        return real(self, key, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S3Storage, "create_exclusive", dies_after_the_claim)
        with pytest.raises(ConnectionError):
            store.append_log("events.jsonl", {"event": "promoted"}, unique=unique)


def test_an_appender_killed_half_way_loses_no_entry(store: Storage, store_kind: str) -> None:
    """A rerun after the crash appends the unique entry the killed one did not write, and the entries after it
    are all there."""
    store.append_log("events.jsonl", {"event": "first"})
    _kill_mid_append(store, store_kind, unique="pointer:abc")
    again = store.append_log("events.jsonl", {"event": "promoted"}, unique="pointer:abc")
    assert again is not None and again["seq"] == 2
    assert store.append_log("events.jsonl", {"event": "promoted"}, unique="pointer:abc") is None
    store.append_log("events.jsonl", {"event": "after"})
    entries = []
    for line in store.read_log("events.jsonl"):
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    assert [(e["seq"], e["event"]) for e in entries] == [(1, "first"), (2, "promoted"), (3, "after")]


def test_concurrent_appenders_of_one_unique_entry_write_it_once(store: Storage) -> None:
    results: list[object] = []

    def append() -> None:
        results.append(store.append_log("events.jsonl", {"event": "promoted"}, unique="pointer:abc"))

    threads = [threading.Thread(target=append) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 6 and sum(r is not None for r in results) == 1
    assert [json.loads(line)["seq"] for line in store.read_log("events.jsonl")] == [1]


# --------------------------------------------------------------------------- naming the place
def test_spec_opens_the_same_storage_in_another_process(store: Storage) -> None:
    spec = json.loads(json.dumps(store.spec()))  # what crosses to uvicorn's workers: JSON
    other = open_spec(spec)
    assert type(other) is type(store) and other.url_for("k") == store.url_for("k")
    store.write_bytes("production.json", b"from the parent")
    assert other.read_bytes("production.json") == b"from the parent"


def test_where_names_the_place_as_a_path_or_an_object_url(store: Storage, store_kind: str) -> None:
    root, key = store.where(), store.where("versions/v0001/metadata.json")
    assert (
        str(root / "versions" / "v0001" / "metadata.json") == str(key) == store.url_for("versions/v0001/metadata.json")
    )
    assert key.name == "metadata.json" and str(key.parent) == store.url_for("versions/v0001")
    assert isinstance(root, ObjectUrl if store_kind == "s3" else Path)
    assert str(store.child("versions").where()) == store.url_for("versions")


def test_sweep_orphans_removes_only_what_killed_writers_left(store: Storage, store_kind: str) -> None:
    store.write_bytes("kept/summary.json", b"published")
    if store_kind == "local":  # what a writer killed between write and rename leaves behind
        assert isinstance(store, LocalStorage)
        orphan = store.root / "kept" / ".summary.json.storage-tmp-dead"
        orphan.write_bytes(b"half")
        old = time.time() - 7200
        os.utime(orphan, (old, old))
        young = store.root / "kept" / ".other.json.storage-tmp-live"
        young.write_bytes(b"being written")
        assert store.sweep_orphans(older_than_seconds=3600) == [str(orphan)]
        assert not orphan.exists() and young.exists()
        assert store.sweep_orphans() == [str(young)]
    else:  # uploads are whole or absent: there is nothing to sweep
        assert store.sweep_orphans() == []
    assert store.list() == ["kept/summary.json"]
