"""The storage port on an S3-compatible bucket (AWS S3, MinIO, Ceph): :class:`S3Storage`.

Its boto3 client and the meaning of S3's errors are :mod:`tripduration.io.s3_client`'s; parquet columns are read
with ``pyarrow.fs`` by :mod:`tripduration.io.s3_parquet`. Nothing outside ``tripduration/io`` imports either.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tripduration.io.s3_client import HINTS, S3Settings, error_code, http_status, make_s3_client, parse_s3_url
from tripduration.io.storage import FLAG, ObjectUrl, Storage, StorageError, check_key, join, nothing

if TYPE_CHECKING:
    import pandas as pd

#: the object that claims a folder written with ``writing(..., exclusive=True)``
CLAIM = ".claim"
#: suffix of the folder holding a log's entries (objects cannot be appended to)
LOG_SUFFIX = ".d"


class S3Storage:
    """A prefix in an S3-compatible bucket, through a boto3 client."""

    #: attempts after a 409 ConditionalRequestConflict (AWS: a concurrent conditional write on the same key)
    conflict_retries = 5

    def __init__(self, url: str, client: Any = None, settings: S3Settings | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.settings = settings or S3Settings()
        self._client = client
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else make_s3_client(self.settings)

    @property
    def local_root(self) -> None:
        return None

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}" if key else self.url

    poll_seconds = 1.0  # a HEAD costs a round trip: not one per request

    def spec(self) -> dict[str, Any]:
        return {"url": self.url, "s3": asdict(self.settings)}

    def where(self, key: str = "") -> ObjectUrl:
        return ObjectUrl(self.url_for(key))

    def child(self, prefix: str) -> Storage:
        return S3Storage(self.url_for(prefix), self._client, self.settings)

    def _explain(self, exc: Exception, url: str) -> Exception:
        code = error_code(exc)
        if code in ("NoSuchKey", "404", "NotFound"):
            return FileNotFoundError(f"{url}: no such object")
        hint = HINTS.get(code or type(exc).__name__, "see the S3 error above")
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", "?")
        return StorageError(f"{url} (endpoint {endpoint}): {code or type(exc).__name__}: {exc}; {hint}")

    def _call(self, key: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=self.object_key(key), **kwargs)
        except Exception as exc:
            code = error_code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise  # the callers of conditional writes decide
            if code or type(exc).__module__.startswith("botocore"):
                raise self._explain(exc, self.url_for(key)) from exc
            raise

    # ------------------------------------------------------------------ reading
    def read_bytes(self, key: str) -> bytes:
        return self._call(key, "get_object")["Body"].read()

    def read_with_token(self, key: str) -> tuple[bytes, str]:
        response = self._call(key, "get_object")
        return response["Body"].read(), response["ETag"]

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._call(key, "head_object")
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def folder_exists(self, key: str) -> bool:
        return self.exists(join(key, FLAG))

    def list(self, prefix: str = "") -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: builtins.list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        except Exception as exc:
            raise self._explain(exc, f"s3://{self.bucket}/{full}") from exc
        return sorted(keys)

    def children(self, key: str) -> builtins.list[str]:
        head = f"{key}/" if key else ""
        return sorted({k[len(head) :].split("/", 1)[0] for k in self.list(head)})

    def change_token(self, key: str) -> str | None:
        head = self._head(key)
        return None if head is None else f"{head['ETag']}:{head['ContentLength']}"

    def identity(self, key: str) -> str | None:
        """The ETag (the MD5 of a single PUT's body, of the parts for a multipart upload: it changes whenever
        the object is rewritten with other bytes) and size: one HEAD, where hashing would download the file."""
        head = self._head(key)
        return None if head is None else f"etag={head['ETag'].strip(chr(34))},bytes={head['ContentLength']}"

    def confirms(self, identity: str, sha256: str) -> bool:
        return True  # local_copy() downloaded exactly the bytes of ``identity`` (If-Match)

    @contextlib.contextmanager
    def local_copy(self, key: str, identity: str | None = None, folder: bool = False) -> Iterator[Path]:
        """Download into a fresh scratch folder under ``TMPDIR`` (same base name), removed after the block."""
        scratch = Path(tempfile.mkdtemp(prefix="s3-input-"))
        try:
            local = scratch / (key.rsplit("/", 1)[-1] or "input")
            if folder:
                self._download_folder(key, local)
            else:
                self._download(key, local, identity)
            yield local
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _download(self, key: str, local: Path, identity: str | None) -> None:
        condition = {}
        if identity:
            condition = {"IfMatch": '"' + identity.split(",")[0].removeprefix("etag=") + '"'}
        try:
            body = self._call(key, "get_object", **condition)["Body"]
        except Exception as exc:
            if error_code(exc) == "PreconditionFailed" or http_status(exc) == 412:
                raise StorageError(
                    f"{self.url_for(key)} changed while the pipeline was running ({identity} when the run "
                    "started); nothing was written. Run the same command again: it will process the new content."
                ) from exc
            raise
        with open(local, "wb") as fh:
            shutil.copyfileobj(body, fh, 1 << 20)

    def _download_folder(self, key: str, local: Path) -> None:
        head = f"{key}/"
        for name in self.list(head):
            relative = name[len(head) :]
            if relative and relative not in (FLAG, CLAIM):  # the storage's own bookkeeping, not the writer's
                dest = local / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, self.object_key(name), str(dest))

    def read_parquet(self, key: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        from tripduration.io.s3_parquet import arrow_s3_filesystem, read_parquet_columns

        return read_parquet_columns(self.url_for(key), columns, arrow_s3_filesystem(self.settings))

    def cache_dir(self, name: str) -> Path:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "tripduration" / hashlib.sha256(self.url.encode()).hexdigest()[:16] / name

    # ------------------------------------------------------------------ writing
    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(key, "put_object", Body=data)

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        """PUT with a precondition: False on 412 (it did not hold) or a vanished object, retried on 409."""
        for attempt in range(self.conflict_retries + 1):
            try:
                self._call(key, "put_object", Body=data, **condition)
                return True
            except FileNotFoundError:  # If-Match on an object deleted meanwhile
                return False
            except StorageError:
                raise
            except Exception as exc:
                code = error_code(exc)
                if code == "PreconditionFailed" or http_status(exc) == 412:
                    return False
                if code != "ConditionalRequestConflict" or attempt == self.conflict_retries:
                    raise self._explain(exc, self.url_for(key)) from exc
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace_if(self, key: str, data: bytes, expected_token: str | None) -> bool:
        if expected_token is None:
            return self.create_exclusive(key, data)
        return self._conditional_put(key, data, IfMatch=expected_token)

    def delete(self, key: str) -> None:
        self._call(key, "delete_object")

    @contextlib.contextmanager
    def writing(
        self, key: str, folder: bool = False, exclusive: bool = False, last: str | None = None
    ) -> Iterator[Path]:
        """Write in local scratch (``TMPDIR``); upload only if the block succeeds; remove the scratch either way."""
        scratch = Path(tempfile.mkdtemp(prefix="s3-output-"))
        try:
            local = scratch / (key.rsplit("/", 1)[-1] or "output")
            if folder:
                local.mkdir()
            yield local
            if not folder:
                if not local.is_file():
                    raise FileNotFoundError(f"nothing was written at {local} for {self.url_for(key)}")
                if exclusive and not self._conditional_upload(local, key):
                    raise FileExistsError(f"{self.url_for(key)}: already exists")
                if not exclusive:
                    self.client.upload_file(str(local), self.bucket, self.object_key(key))
            elif exclusive:
                self._claim_folder(local, key, last)
            else:
                self._publish_folder(local, key)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _conditional_upload(self, local: Path, key: str) -> bool:
        return self.create_exclusive(key, local.read_bytes())

    def _files(self, local: Path) -> builtins.list[Path]:
        return sorted(p for p in local.rglob("*") if p.is_file())

    def _claim_folder(self, local: Path, key: str, last: str | None) -> None:
        """A new folder: claimed create-only (``.claim``), the files uploaded, ``last`` last (it says complete)."""
        if not self.create_exclusive(join(key, CLAIM), b""):
            raise FileExistsError(f"{self.url_for(key)}: already exists")
        files = self._files(local)
        ordered = [p for p in files if p.relative_to(local).as_posix() != last]
        ordered += [p for p in files if p.relative_to(local).as_posix() == last]
        for path in ordered:
            self.client.upload_file(
                str(path), self.bucket, self.object_key(join(key, path.relative_to(local).as_posix()))
            )

    def _publish_folder(self, local: Path, key: str) -> None:
        """Old flag removed (a rewrite must not look complete half-way), files uploaded, objects of an
        interrupted earlier attempt that are not part of this folder deleted, the flag written last."""
        files = self._files(local)
        if any(p.relative_to(local).as_posix() == FLAG for p in files):
            raise ValueError(f"{local}: holds a file named {FLAG!r}, the completion flag of a folder output")
        self.delete(join(key, FLAG))
        uploaded = set()
        for path in files:
            name = join(key, path.relative_to(local).as_posix())
            self.client.upload_file(str(path), self.bucket, self.object_key(name))
            uploaded.add(name)
        for stale in sorted(set(self.list(f"{key}/")) - uploaded):
            self.delete(stale)
        self.write_bytes(join(key, FLAG), b"")

    # ------------------------------------------------------------------ logs and locks
    def append_log(self, key: str, record: dict[str, Any], unique: str | None = None) -> dict[str, Any] | None:
        """One create-only object per entry, ``<key>.d/<seq>.json``: of two hosts appending at once, one gets
        the number and the other takes the next. ``unique`` is claimed first (``<key>.d/unique/<hash>``); a
        claim found taken is checked against the log, since its claimant may have died before its entry."""
        folder = f"{key}{LOG_SUFFIX}"
        check = False
        if unique is not None:
            name = hashlib.sha256(unique.encode()).hexdigest()[:32]
            check = not self.create_exclusive(f"{folder}/unique/{name}", unique.encode())
        entries = self._entries(folder)
        while True:
            if check and self._logged(entries, unique):
                return None
            seq = len(entries) + 1
            stored = {**record, "seq": seq, **({"entry": unique} if unique else {})}
            if self.create_exclusive(
                f"{folder}/{seq:010d}.json", json.dumps(stored, sort_keys=True, default=str).encode()
            ):
                return stored
            # taken meanwhile: by another entry, or (with ``unique``) by this one written by another appender
            entries, check = self._entries(folder), unique is not None

    def _logged(self, entries: builtins.list[str], unique: str | None) -> bool:
        """Is an entry named ``unique`` among ``entries`` (newest first: a rerun's is usually recent)?"""
        for key in reversed(entries):
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(self.read_bytes(key)).get("entry") == unique:
                    return True
        return False

    def _entries(self, folder: str) -> builtins.list[str]:
        return [k for k in self.list(f"{folder}/") if k.count("/") == folder.count("/") + 1 and k.endswith(".json")]

    def read_log(self, key: str) -> builtins.list[str]:
        return [self.read_bytes(k).decode(errors="replace") for k in self._entries(f"{key}{LOG_SUFFIX}")]

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return nothing()

    def sweep_orphans(self, older_than_seconds: float = 0.0) -> builtins.list[str]:
        return []  # uploads are whole or absent; temporaries live in local scratch and are removed with it
