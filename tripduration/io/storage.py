"""One small storage interface for a local folder and an S3-compatible bucket (AWS S3, MinIO, Ceph).

Why: ``[paths] raw_dir``, ``work_dir`` and ``registry_dir`` may be ``s3://bucket/prefix``. The pipeline needs
the same few guarantees from both places, and this module states them once:

- ``write_bytes``: an object appears complete or not at all (local: temporary file + ``os.replace``; S3: a
  single PUT, which S3 makes visible only when the whole body arrived);
- ``create_exclusive``: create-only, exactly one of several concurrent writers wins (local: ``os.link`` of a
  complete temporary file, which fails if the name exists; S3: ``PutObject`` with ``If-None-Match: *``);
- ``replace_if``: compare-and-swap on a token read before (local: an ``flock`` lock file and a re-read; S3:
  ``PutObject`` with ``If-Match: <ETag>``), so a read-modify-write never silently overwrites a concurrent one.

On top of those, :func:`next_version_create` and :func:`update_pointer` are what a registry shared by several
hosts needs: version numbers claimed with create-only writes and a production pointer swapped with
compare-and-swap. S3 access goes through boto3 (credentials and endpoint from the standard AWS environment
variables, ``AWS_ENDPOINT_URL`` for MinIO/Ceph, or an explicit client) and parquet is read column-wise with
``pyarrow.fs.S3FileSystem``. This module never imports luigi; ``tasks/s3_targets.py`` is the luigi side.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

if TYPE_CHECKING:  # boto3 and pandas load only when S3 or parquet is used
    import pandas as pd
    import pyarrow.fs

#: marks the temporary and lock files of :class:`LocalStorage`; keys may not contain it
_TMP_MARK = ".storage-tmp-"
_LOCK_SUFFIX = ".storage-lock"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


class StorageError(RuntimeError):
    """A storage operation failed for a reason the operator has to fix (names the URL and what to do)."""


# --------------------------------------------------------------------------- the interface
@runtime_checkable
class Storage(Protocol):
    """Keys are ``/``-separated names relative to the storage's root (``versions/v0001/metadata.json``)."""

    def read_bytes(self, key: str) -> bytes:
        """The object's content; ``FileNotFoundError`` naming its URL if there is none."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace the object atomically: readers see the old content or all of the new."""
        ...

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create the object only if it does not exist; False if it does (someone else won)."""
        ...

    def read_with_token(self, key: str) -> tuple[bytes, str]:
        """The content and a token that changes whenever the content changes (for :meth:`replace_if`)."""
        ...

    def replace_if(self, key: str, data: bytes, expected_token: str | None) -> bool:
        """Replace the object only if its token is still ``expected_token`` (None: only if it is absent)."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a string prefix, not only a folder), at any depth."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone (deletes are retried after crashes)."""
        ...

    def url_for(self, key: str) -> str:
        """Where the key lives, for messages and for tools that take a path or URL."""
        ...


def check_key(key: str) -> str:
    """Reject keys that could escape the root or collide with the storage's own temporary files."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"storage key {key!r} must be a relative name such as 'versions/v0001/metadata.json'")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"storage key {key!r} may not hold empty, '.' or '..' segments")
    if _TMP_MARK in key or key.endswith(_LOCK_SUFFIX):
        raise ValueError(f"storage key {key!r} uses a name reserved for temporary/lock files ({_TMP_MARK!r})")
    return key


# --------------------------------------------------------------------------- local folder
class LocalStorage:
    """A folder on a local (or POSIX network) file system."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def url_for(self, key: str) -> str:
        return str(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def read_with_token(self, key: str) -> tuple[bytes, str]:
        data = self.read_bytes(key)
        return data, content_token(data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    @contextlib.contextmanager
    def _complete_temp(self, key: str, data: bytes) -> Iterator[Path]:
        """A fully written, fsynced temporary file beside ``key`` (same folder, so renames are atomic)."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}{_TMP_MARK}", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            yield Path(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._complete_temp(key, data) as tmp:
            os.replace(tmp, self.path(key))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # link() of a complete file: atomic, and fails if the name exists (O_EXCL on the final name would
        # expose a half-written file to readers while it is being written)
        with self._complete_temp(key, data) as tmp:
            try:
                os.link(tmp, self.path(key))
            except FileExistsError:
                return False
            return True

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """An exclusive ``flock`` on a lock file beside ``key``; released by the kernel if the holder dies."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(final.parent / f".{final.name}{_LOCK_SUFFIX}", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def replace_if(self, key: str, data: bytes, expected_token: str | None) -> bool:
        if expected_token is None:
            return self.create_exclusive(key, data)
        with self._locked(key):
            try:
                _, current = self.read_with_token(key)
            except FileNotFoundError:
                return False
            if current != expected_token:
                return False
            self.write_bytes(key, data)
            return True

    def list(self, prefix: str = "") -> list[str]:
        folder = self.root / prefix.rpartition("/")[0]
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            name = path.name
            if _TMP_MARK in name or name.endswith(_LOCK_SUFFIX) or not path.is_file():
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()


def content_token(data: bytes) -> str:
    """The local token: the content's sha256 (like S3's ETag, it changes exactly when the content does)."""
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- S3-compatible bucket
def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix without slashes at the ends)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not an S3 URL; write it as s3://bucket or s3://bucket/prefix")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: an S3 URL may not hold '?' or '#'; write s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


_SESSION_LOCK = threading.Lock()
_SESSION: list[Any] = []


def make_s3_client(endpoint_url: str | None = None, **client_kwargs: Any) -> Any:
    """A boto3 S3 client. Credentials, region and endpoint come from boto3's standard chain (the
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION``/``AWS_ENDPOINT_URL`` environment
    variables, ``~/.aws``, instance roles) unless given here.

    Clients come from one boto3 session per process, created under a lock: a new session loads the S3
    service model again (measured ~150 ms vs ~25 ms per client), and sessions are not thread-safe. So
    static credentials are resolved once per process (botocore refreshes role credentials by itself).
    """
    import boto3

    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0].client("s3", **client_kwargs)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


_HINTS = {
    "NoSuchBucket": "create the bucket or fix the bucket name in [paths]",
    "AccessDenied": "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or [s3] in luigi.cfg) and the bucket policy",
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID (or [s3] aws_access_key_id in luigi.cfg)",
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY (or [s3] aws_secret_access_key in luigi.cfg)",
    "EndpointConnectionError": "is the S3 server up? check AWS_ENDPOINT_URL (or [s3] endpoint_url in luigi.cfg)",
    "NoCredentialsError": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or [s3] keys in luigi.cfg)",
    "NotImplemented": "this S3 server lacks conditional writes (If-None-Match/If-Match); see docs/object-storage.md",
}


class S3Storage:
    """A prefix in an S3-compatible bucket, through a boto3 client."""

    #: attempts after a 409 ConditionalRequestConflict (AWS: a concurrent conditional write on the same key)
    conflict_retries = 5

    def __init__(self, url: str, client: Any = None, endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client if client is not None else make_s3_client(endpoint_url)

    def __repr__(self) -> str:
        return f"S3Storage({self._root_url()!r})"

    def _root_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}" if key else self._root_url()

    def _explain(self, exc: Exception, url: str) -> Exception:
        code = _error_code(exc)
        if code in ("NoSuchKey", "404"):
            return FileNotFoundError(f"{url}: no such object")
        hint = _HINTS.get(code or type(exc).__name__, "see the S3 error above")
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", "?")
        return StorageError(f"{url} (endpoint {endpoint}): {code or type(exc).__name__}: {exc}; {hint}")

    def _call(self, key: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=self.object_key(key), **kwargs)
        except Exception as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise  # the callers of conditional writes decide
            if code or type(exc).__module__.startswith("botocore"):
                raise self._explain(exc, self.url_for(key)) from exc
            raise

    def read_bytes(self, key: str) -> bytes:
        return self._call(key, "get_object")["Body"].read()

    def read_with_token(self, key: str) -> tuple[bytes, str]:
        response = self._call(key, "get_object")
        return response["Body"].read(), response["ETag"]

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
                code = _error_code(exc)
                if code == "PreconditionFailed" or _status(exc) == 412:
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

    def exists(self, key: str) -> bool:
        try:
            self._call(key, "head_object")
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        except Exception as exc:
            raise self._explain(exc, f"s3://{self.bucket}/{full}") from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._call(key, "delete_object")


# --------------------------------------------------------------------------- choosing one
def is_s3_url(url_or_path: str | Path) -> bool:
    return str(url_or_path).startswith("s3://")


def storage_for(url_or_path: str | Path, client: Any = None, endpoint_url: str | None = None) -> Storage:
    """:class:`S3Storage` for ``s3://bucket/prefix``, :class:`LocalStorage` for a path or ``file://`` URL."""
    text = str(url_or_path)
    scheme = urlsplit(text).scheme
    if scheme == "s3":
        return S3Storage(text, client=client, endpoint_url=endpoint_url)
    if scheme == "file":
        return LocalStorage(urlsplit(text).path)
    if scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive ("C:\...")
        raise ValueError(f"{text!r}: storage scheme {scheme!r} is not supported; use a path or s3://bucket/prefix")
    return LocalStorage(text)


# --------------------------------------------------------------------------- parquet, column-wise
def arrow_s3_filesystem(
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
) -> pyarrow.fs.S3FileSystem:
    """``pyarrow.fs.S3FileSystem`` for the same store boto3 uses.

    Arrow's S3 client does not read ``AWS_ENDPOINT_URL`` (measured with pyarrow 22: it went to
    ``bkt.s3.us-east-1.amazonaws.com``), so the endpoint is passed explicitly, split into host:port and
    scheme (``http`` for a local MinIO/test server). Credentials default to the AWS environment variables.
    """
    from pyarrow import fs

    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {
        "access_key": access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "region": region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    }
    if not (kwargs["access_key"] and kwargs["secret_key"]):
        kwargs.pop("access_key")
        kwargs.pop("secret_key")
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if not parts.netloc:
            raise ValueError(f"S3 endpoint {endpoint_url!r} must be a URL such as http://127.0.0.1:9000")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme or "https"
    return fs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})


def read_parquet_columns(
    url: str | Path,
    columns: Sequence[str] | None = None,
    filesystem: pyarrow.fs.FileSystem | None = None,
    endpoint_url: str | None = None,
) -> pd.DataFrame:
    """Read ``columns`` (default: all) of a parquet file, local or ``s3://``, one column at a time.

    Local paths go to :func:`tripduration.io.parquet.read_parquet`. For S3 the same frame comes back (pandas
    metadata restores the dtypes), read with ranged GETs of only the requested column chunks.
    """
    if not is_s3_url(url):
        from tripduration.io.parquet import read_parquet

        return read_parquet(url, columns)
    import pandas as pd
    import pyarrow.parquet as pq

    bucket, key = parse_s3_url(str(url))
    fs = filesystem or arrow_s3_filesystem(endpoint_url)
    try:
        pf = pq.ParquetFile(f"{bucket}/{key}", filesystem=fs)
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no such object") from None
    available = pf.schema_arrow.names
    names = list(columns) if columns is not None else [n for n in available if n != "__index_level_0__"]
    missing = [c for c in names if c not in available]
    if missing:
        raise KeyError(f"{url}: no column(s) {missing}; the file has {available}")
    parts = {name: pf.read(columns=[name]).to_pandas(self_destruct=True)[name] for name in names}
    frame = pd.DataFrame(parts, copy=False)
    if not names:
        frame.index = pd.RangeIndex(pf.metadata.num_rows)
    return frame


# --------------------------------------------------------------------------- registry-safety primitives
def version_name(number: int) -> str:
    return f"v{number:04d}"


def list_version_numbers(storage: Storage, prefix: str) -> list[int]:
    """Numbers of every claimed version under ``<prefix>/versions/`` (complete or not)."""
    base = f"{prefix.strip('/')}/versions/" if prefix.strip("/") else "versions/"
    numbers = set()
    for key in storage.list(base):
        match = _VERSION_RE.match(key[len(base) :].split("/", 1)[0])
        if match:
            numbers.add(int(match.group(1)))
    return sorted(numbers)


def _version_key(prefix: str, number: int, name: str) -> str:
    head = prefix.strip("/")
    return f"{head}/versions/{version_name(number)}/{name}" if head else f"versions/{version_name(number)}/{name}"


#: written last into a version folder: the version is complete (every payload is there)
COMPLETE_FLAG = "_COMPLETE"


def next_version_create(
    storage: Storage,
    prefix: str,
    payloads: Mapping[str, bytes],
    metadata: Mapping[str, Any] | None = None,
    max_attempts: int = 1000,
) -> str:
    """Claim the next free ``vNNNN`` under ``<prefix>/versions/`` and write ``payloads`` into it.

    The claim is a create-only write of ``metadata.json`` (``metadata`` plus the version's name and the
    sha256 of every payload): of several hosts racing for a number exactly one wins, the others move on to
    the next number. The payloads follow, then :data:`COMPLETE_FLAG` last, so a version is complete only
    when its flag exists (:func:`complete_versions`); a host killed in between leaves an incomplete
    version that readers skip and that the same registration can finish (:func:`finish_version`).
    """
    if "metadata.json" in payloads or COMPLETE_FLAG in payloads:
        raise ValueError(f"payload names 'metadata.json' and {COMPLETE_FLAG!r} are written by next_version_create")
    files = {name: hashlib.sha256(data).hexdigest() for name, data in payloads.items()}
    existing = list_version_numbers(storage, prefix)
    number = existing[-1] + 1 if existing else 1
    for _ in range(max_attempts):
        meta = {**(metadata or {}), "version": version_name(number), "files": files}
        claim = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
        if storage.create_exclusive(_version_key(prefix, number, "metadata.json"), claim):
            finish_version(storage, prefix, version_name(number), payloads)
            return version_name(number)
        number += 1
    raise StorageError(f"{storage.url_for(prefix or 'versions')}: no free version number after {max_attempts} attempts")


def finish_version(storage: Storage, prefix: str, version: str, payloads: Mapping[str, bytes]) -> None:
    """Write a claimed version's payloads (checked against the sha256 its metadata recorded), flag last."""
    number = int(version[1:])
    meta = json.loads(storage.read_bytes(_version_key(prefix, number, "metadata.json")))
    for name, data in payloads.items():
        recorded = meta.get("files", {}).get(name)
        if recorded != hashlib.sha256(data).hexdigest():
            raise ValueError(f"{version}/{name}: content differs from the sha256 {recorded} its metadata recorded")
        storage.write_bytes(_version_key(prefix, number, name), data)
    storage.write_bytes(_version_key(prefix, number, COMPLETE_FLAG), b"")


def complete_versions(storage: Storage, prefix: str) -> list[str]:
    """Versions whose :data:`COMPLETE_FLAG` exists, oldest first (what a registry reader may list)."""
    head = f"{prefix.strip('/')}/versions/" if prefix.strip("/") else "versions/"
    done = {
        key[len(head) :].split("/", 1)[0]
        for key in storage.list(head)
        if key.endswith(f"/{COMPLETE_FLAG}") and key.count("/") == head.count("/") + 1
    }
    return sorted((v for v in done if _VERSION_RE.match(v)), key=lambda v: int(v[1:]))


def swap_pointer(storage: Storage, key: str, new: bytes, expected_token: str | None) -> bool:
    """Replace the pointer object ``key`` with ``new`` only if nobody changed it since it was read with
    ``expected_token`` (None: only if there is no pointer yet). False means: read it again and decide again."""
    return storage.replace_if(key, new, expected_token)


def read_pointer(storage: Storage, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The pointer (JSON object) and its token, or ``(None, None)`` if there is none yet."""
    try:
        data, token = storage.read_with_token(key)
    except FileNotFoundError:
        return None, None
    return json.loads(data), token


def update_pointer(
    storage: Storage,
    key: str,
    decide: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    max_attempts: int = 100,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Read-decide-swap of a JSON pointer without lost updates, however many hosts do it at once.

    ``decide(current)`` returns the new pointer (it sees the pointer it would replace, so it can compare
    metrics and record ``previous``) or None to leave it. When another host swapped in between, the swap
    fails and ``decide`` runs again on the newer pointer. Returns ``(written or None, the pointer decided on)``.
    """
    for _ in range(max_attempts):
        current, token = read_pointer(storage, key)
        new = decide(current)
        if new is None:
            return None, current
        if swap_pointer(storage, key, json.dumps(new, sort_keys=True, default=str).encode(), token):
            return new, current
    raise StorageError(f"{storage.url_for(key)}: pointer still changing after {max_attempts} attempts")
