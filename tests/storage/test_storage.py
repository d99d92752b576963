"""The Storage contract, run against a local folder and the moto S3 server with the same tests."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.storage.conftest import S3Env
from tripduration.io import open_storage as storage_for
from tripduration.io.local import LocalStorage
from tripduration.io.parquet import read_parquet, write_parquet
from tripduration.io.s3 import S3Storage
from tripduration.io.s3_parquet import read_parquet_columns
from tripduration.io.storage import Storage, StorageError, check_key


def test_write_then_read_and_exists(store: Storage) -> None:
    assert not store.exists("a/b.json")
    store.write_bytes("a/b.json", b'{"x": 1}')
    assert store.exists("a/b.json")
    assert store.read_bytes("a/b.json") == b'{"x": 1}'
    store.write_bytes("a/b.json", b"replaced")
    assert store.read_bytes("a/b.json") == b"replaced"


def test_missing_key_raises_file_not_found_naming_the_url(store: Storage) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.json"):
        store.read_bytes("nothing.json")
    with pytest.raises(FileNotFoundError, match=r"nothing\.json"):
        store.read_with_token("nothing.json")


def test_create_exclusive_only_once(store: Storage) -> None:
    assert store.create_exclusive("claims/v0001", b"mine")
    assert not store.create_exclusive("claims/v0001", b"theirs")
    assert store.read_bytes("claims/v0001") == b"mine"


def test_replace_if_with_current_token(store: Storage) -> None:
    store.write_bytes("pointer.json", b"one")
    _, token = store.read_with_token("pointer.json")
    assert store.replace_if("pointer.json", b"two", token)
    data, new_token = store.read_with_token("pointer.json")
    assert data == b"two"
    assert new_token != token


def test_replace_if_with_stale_token_is_refused(store: Storage) -> None:
    store.write_bytes("pointer.json", b"one")
    _, stale = store.read_with_token("pointer.json")
    store.write_bytes("pointer.json", b"someone else")
    assert not store.replace_if("pointer.json", b"mine", stale)
    assert store.read_bytes("pointer.json") == b"someone else"


def test_replace_if_none_creates_only_when_absent(store: Storage) -> None:
    assert store.replace_if("pointer.json", b"first", None)
    assert not store.replace_if("pointer.json", b"second", None)
    assert store.read_bytes("pointer.json") == b"first"


def test_replace_if_on_deleted_object_is_refused(store: Storage) -> None:
    store.write_bytes("pointer.json", b"one")
    _, token = store.read_with_token("pointer.json")
    store.delete("pointer.json")
    assert not store.replace_if("pointer.json", b"two", token)
    assert not store.exists("pointer.json")


def test_list_is_sorted_recursive_and_by_string_prefix(store: Storage) -> None:
    for key in ("versions/v0002/metadata.json", "versions/v0001/metadata.json", "versions/v0001/model.joblib"):
        store.write_bytes(key, b"x")
    store.write_bytes("production.json", b"x")
    assert store.list("versions/") == [
        "versions/v0001/metadata.json",
        "versions/v0001/model.joblib",
        "versions/v0002/metadata.json",
    ]
    assert store.list("versions/v0002") == ["versions/v0002/metadata.json"]
    assert store.list("prod") == ["production.json"]
    assert store.list("nothing/") == []
    assert len(store.list()) == 4


def test_list_hides_the_local_temporary_and_lock_files(store: Storage) -> None:
    store.write_bytes("pointer.json", b"one")
    _, token = store.read_with_token("pointer.json")
    store.replace_if("pointer.json", b"two", token)  # leaves a lock file beside it locally
    assert store.list() == ["pointer.json"]


def test_delete_is_idempotent(store: Storage) -> None:
    store.write_bytes("x/y", b"1")
    store.delete("x/y")
    store.delete("x/y")
    assert not store.exists("x/y")


def test_url_for_names_the_place(store: Storage, store_kind: str) -> None:
    url = store.url_for("a/b.json")
    if store_kind == "s3":
        assert url.startswith("s3://storage-test-") and url.endswith("/some/prefix/a/b.json")
    else:
        assert url.endswith("/store/a/b.json")


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a//b", "dir/", f"x{'.storage-tmp-'}1"])
def test_bad_keys_are_refused_with_the_key_in_the_message(store: Storage, bad: str) -> None:
    with pytest.raises(ValueError, match="storage key"):
        store.write_bytes(bad, b"x")


def test_local_write_leaves_no_file_when_interrupted(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing the temporary file and renaming it leaves the old content, nothing partial."""
    store = LocalStorage(tmp_path)
    store.write_bytes("m.json", b"old")

    def crash(*_args: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr("tripduration.io.local.os.replace", crash)
    with pytest.raises(OSError, match="killed"):
        store.write_bytes("m.json", b"new")
    assert store.read_bytes("m.json") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_storage_for_chooses_by_scheme(tmp_path, s3_env: S3Env) -> None:
    assert isinstance(storage_for(tmp_path), LocalStorage)
    assert isinstance(storage_for(f"file://{tmp_path}"), LocalStorage)
    s3 = storage_for(s3_env.url("reg"))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix) == (s3_env.bucket, "reg")
    s3.write_bytes("k", b"through the environment's endpoint")
    assert s3.read_bytes("k") == b"through the environment's endpoint"
    with pytest.raises(ValueError, match="'gs' is not supported"):
        storage_for("gs://bucket/x")
    with pytest.raises(ValueError, match="s3://bucket"):
        S3Storage("s3:///no-bucket")


def test_missing_bucket_error_names_url_and_fix(s3_env: S3Env) -> None:
    store = S3Storage("s3://no-such-bucket-here/x")
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-here/x/k.*NoSuchBucket.*create the bucket"):
        store.write_bytes("k", b"1")


def test_unreachable_endpoint_error_says_what_to_check(s3_env: S3Env) -> None:
    from botocore.config import Config

    from tripduration.io.s3 import make_s3_client

    client = make_s3_client("http://127.0.0.1:9", config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(StorageError, match="AWS_ENDPOINT_URL"):
        S3Storage("s3://bucket/x", client=client).read_bytes("k")


def test_check_key_accepts_nested_names() -> None:
    assert check_key("versions/v0001/report/plot.png") == "versions/v0001/report/plot.png"


# --------------------------------------------------------------------------- parquet
def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "PULocationID": pd.array([1, 2, 3, 4], dtype="int32"),
            "trip_distance": [0.5, 1.25, 3.0, float("nan")],
            "store_and_fwd_flag": pd.Series(["N", "Y", None, "N"], dtype="string"),
            "pickup": pd.to_datetime(["2021-01-01 00:00", "2021-01-01 01:00", "2021-01-02 00:00", "2021-01-03 00:00"]),
        }
    )


@pytest.mark.parametrize("columns", [None, ["trip_distance", "PULocationID"], []])
def test_parquet_columns_from_s3_equal_the_local_read(tmp_path, s3_env: S3Env, columns) -> None:
    local = tmp_path / "month.parquet"
    write_parquet(_frame(), local, row_group_rows=2)
    S3Storage(s3_env.url("raw")).write_bytes("month.parquet", local.read_bytes())
    from_s3 = read_parquet_columns(s3_env.url("raw/month.parquet"), columns)
    pd.testing.assert_frame_equal(from_s3, read_parquet(local, columns))
    pd.testing.assert_frame_equal(S3Storage(s3_env.url("raw")).read_parquet("month.parquet", columns), from_s3)


def test_parquet_from_s3_missing_column_and_object_are_named(tmp_path, s3_env: S3Env) -> None:
    local = tmp_path / "month.parquet"
    write_parquet(_frame(), local)
    S3Storage(s3_env.url()).write_bytes("month.parquet", local.read_bytes())
    with pytest.raises(KeyError, match=r"month.parquet.*DOLocationID"):
        read_parquet_columns(s3_env.url("month.parquet"), ["DOLocationID"])
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet"):
        read_parquet_columns(s3_env.url("absent.parquet"))
