"""The storage port: what the pipeline needs from a place that holds files, local folder or S3 bucket alike.

Every read and write of the pipeline's files goes through a :class:`Storage` (``[paths] raw_dir``, ``work_dir``,
``registry_dir``; the registry; content identity; the service's hot swap; the MLflow export; ``invalidate`` and
``status``). Two implementations know the difference between the places and nothing else does:
:class:`~tripduration.io.local.LocalStorage` and :class:`~tripduration.io.s3.S3Storage`; :func:`open_storage`
picks one from a configured value. What each guarantee means on each backend:

==========================  =====================================  =========================================
guarantee                   local folder                           S3-compatible bucket
==========================  =====================================  =========================================
``write_bytes``/``writing``  temporary name beside it + rename     one PUT / multipart upload (all or nothing)
folder outputs              built under a temporary name, renamed  files first, ``_SUCCESS`` flag last
``create_exclusive``        ``link()`` of a complete file          ``PutObject`` with ``If-None-Match: *``
``replace_if`` (CAS)        ``flock`` + compare the sha256         ``PutObject`` with ``If-Match: <ETag>``
claiming a new folder       ``rename()`` of a complete folder      ``.claim`` create-only, the ``last`` file last
``append_log``              a JSON line, under ``flock``           one create-only object per entry
``identity`` (content)      sha256, cached by stat key             ETag and size (one HEAD)
``lock``                    ``flock`` on a lock file               none: every write is create-only or CAS
==========================  =====================================  =========================================

Keys are ``/``-separated names relative to the storage's root (``versions/v0001/metadata.json``).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

#: the flag written last into a folder output on object storage (luigi's convention)
FLAG = "_SUCCESS"
#: marks the temporary files of a local storage (and of luigi's atomic writes, which it replaces)
TMP_MARK = ".storage-tmp-"
LOCK_SUFFIX = ".storage-lock"


class ObjectUrl(str):
    """An object-storage location (``s3://bucket/key``) with the few ``Path`` operations callers use for
    messages (``/``, ``name``, ``parent``); ``Path("s3://b/k")`` would collapse the ``//``."""

    def __truediv__(self, other: object) -> ObjectUrl:
        return ObjectUrl(f"{self.rstrip('/')}/{str(other).lstrip('/')}")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> ObjectUrl:
        return ObjectUrl(self.rstrip("/").rsplit("/", 1)[0])


class StorageError(RuntimeError):
    """A storage operation failed for a reason the operator has to fix (names the URL and what to do)."""


def check_key(key: str) -> str:
    """Reject keys that could escape the root or collide with the storage's own temporary files."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"storage key {key!r} must be a relative name such as 'versions/v0001/metadata.json'")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"storage key {key!r} may not hold empty, '.' or '..' segments")
    if TMP_MARK in key or key.endswith(LOCK_SUFFIX):
        raise ValueError(f"storage key {key!r} uses a name reserved for temporary/lock files ({TMP_MARK!r})")
    return key


def join(*parts: str) -> str:
    """Keys joined with ``/`` (empty parts skipped)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@runtime_checkable
class Storage(Protocol):
    """A folder of named files, local or in an S3-compatible bucket (see the module docstring)."""

    #: where the root is: an absolute path, or ``s3://bucket/prefix``
    url: str

    def url_for(self, key: str) -> str:
        """Where ``key`` lives (a path or URL), for messages, records and tools that take one."""
        ...

    #: seconds between two looks at :meth:`change_token` of a file a reader follows (0: at every request)
    poll_seconds: float

    def spec(self) -> dict[str, Any]:
        """What :func:`tripduration.io.open_spec` needs to open this storage in another process."""
        ...

    def where(self, key: str = "") -> Path | ObjectUrl:
        """Where ``key`` (default: the root) lives, as a ``Path`` on a local file system or an
        :class:`ObjectUrl`: for messages and the ``/`` of paths shown to users."""
        ...

    def child(self, prefix: str) -> Storage:
        """The storage rooted at ``prefix`` under this one (a model's home under the registry root)."""
        ...

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

    def exists(self, key: str) -> bool:
        """Is there a file (object) at ``key``?"""
        ...

    def folder_exists(self, key: str) -> bool:
        """Is there a complete folder output at ``key`` (written by :meth:`writing` with ``folder=True``)?"""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a string prefix, not only a folder), at any depth."""
        ...

    def children(self, key: str) -> builtins.list[str]:
        """Sorted names directly under the folder ``key`` (``""``: the root), files and folders alike."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""
        ...

    def change_token(self, key: str) -> str | None:
        """A cheap token that changes when the object is replaced (stat / HEAD); None if absent."""
        ...

    def identity(self, key: str) -> str | None:
        """What stands for the object's content in fingerprints, without reading it on every run
        (local: its sha256, cached by stat key; S3: ``etag=...,bytes=...``); None if absent."""
        ...

    def confirms(self, identity: str, sha256: str) -> bool:
        """Are the bytes whose ``sha256`` a reader computed those of ``identity`` (taken earlier)?"""
        ...

    def local_copy(
        self, key: str, identity: str | None = None, folder: bool = False
    ) -> contextlib.AbstractContextManager[Path]:
        """A local path holding the content of ``key`` (a file, or a folder output), for readers that need a
        path. ``identity``: only the bytes it names (S3: If-Match), else the read fails naming the key."""
        ...

    def writing(
        self, key: str, folder: bool = False, exclusive: bool = False, last: str | None = None
    ) -> contextlib.AbstractContextManager[Path]:
        """A fresh local path to write ``key`` into (a file, or with ``folder`` an empty folder), published
        atomically when the block succeeds and removed when it raises. ``exclusive``: publish only if nothing
        is at ``key`` yet (``FileExistsError`` otherwise); ``last``: the file of the folder written last,
        whose presence says the folder is complete."""
        ...

    def read_parquet(self, key: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        """``columns`` (default: all) of a parquet file, read one column at a time."""
        ...

    def append_log(self, key: str, record: dict[str, Any], unique: str | None = None) -> dict[str, Any] | None:
        """Append ``record`` to the append-only log ``key`` with the next sequence number (``seq``: 1, 2, ...).

        ``unique``: append only if no entry with that name is in the log yet (None is returned then).
        Concurrent appenders never lose an entry and never share a sequence number."""
        ...

    def read_log(self, key: str) -> builtins.list[str]:
        """The log's entries (JSON text) in sequence order; empty when there is no log."""
        ...

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock between processes of this host (local); nothing on object storage, where every
        write the callers make is create-only or compare-and-swap instead."""
        ...

    def sweep_orphans(self, older_than_seconds: float = 0.0) -> builtins.list[str]:
        """Remove temporary files left by killed writers (older than the given age); returns what it removed."""
        ...

    def cache_dir(self, name: str) -> Path:
        """A local folder for caches about this storage's files (e.g. content hashes)."""
        ...

    @property
    def local_root(self) -> Path | None:
        """The local folder behind this storage, or None when it is not on this host's file system."""
        ...


def content_token(data: bytes) -> str:
    """The local CAS token: the content's sha256 (like S3's ETag, it changes exactly when the content does)."""
    return hashlib.sha256(data).hexdigest()


def read_json_object(storage: Storage, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object and its CAS token, or ``(None, None)`` when there is none."""
    try:
        data, token = storage.read_with_token(key)
    except FileNotFoundError:
        return None, None
    return json.loads(data), token


def update_json(
    storage: Storage,
    key: str,
    decide: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    max_attempts: int = 100,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Read-decide-swap of a JSON object without lost updates, however many processes or hosts do it at once.

    ``decide(current)`` returns the new object (it sees the one it would replace) or None to leave it. When
    another writer swapped in between, the swap fails and ``decide`` runs again on the newer object. Returns
    ``(written or None, the object decided on)``.
    """
    for _ in range(max_attempts):
        current, token = read_json_object(storage, key)
        new = decide(current)
        if new is None:
            return None, current
        if storage.replace_if(key, json.dumps(new, indent=2, sort_keys=True, default=str).encode(), token):
            return new, current
    raise StorageError(f"{storage.url_for(key)}: still changing after {max_attempts} attempts")


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
