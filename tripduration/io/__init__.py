"""The storage port: the only code that knows a local folder from an S3-compatible bucket.

:func:`open_storage` turns a configured location (a path, relative to a base folder, or ``s3://bucket/prefix``)
into a :class:`~tripduration.io.storage.Storage`; :func:`open_file` does the same for the location of one file.
Everything else (targets, registry, content identity, service, MLflow export, ``invalidate``, ``status``) uses
the Storage interface and never asks which kind it has. :mod:`tripduration.io.formats` reads and writes a
file by its suffix (json, parquet, joblib) through a Storage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tripduration.io.storage import Storage, StorageError

__all__ = ["Storage", "StorageError", "is_s3_url", "open_file", "open_spec", "open_storage"]


def is_s3_url(value: object) -> bool:
    """``s3://bucket/prefix``: a location in an S3-compatible store (see docs/object-storage.md)."""
    return str(value).startswith("s3://")


def open_storage(
    value: str | Path, base: Path | None = None, s3: object = None, hash_cache: Path | None = None
) -> Storage:
    """The storage at a configured location: ``s3://bucket/prefix`` (with ``s3``, an ``S3Settings``), a
    ``file://`` URL, or a path (``~`` expanded; relative paths are relative to ``base``, not the working
    directory). ``hash_cache``: where a local storage caches content digests (see ``LocalStorage``)."""
    text = str(value).strip()
    if is_s3_url(text):
        from tripduration.io.s3 import S3Settings, S3Storage

        return S3Storage(text.rstrip("/"), settings=s3 if isinstance(s3, S3Settings) else None)
    from tripduration.io.local import LocalStorage

    scheme = urlsplit(text).scheme
    if scheme == "file":
        text = urlsplit(text).path
    elif scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive ("C:\...")
        raise ValueError(f"{text!r}: storage scheme {scheme!r} is not supported; use a path or s3://bucket/prefix")
    path = Path(os.path.expanduser(text))
    if not path.is_absolute() and base is not None:
        path = base / path
    return LocalStorage(path, hash_cache)


def open_file(
    value: str | Path, base: Path | None = None, s3: object = None, hash_cache: Path | None = None
) -> tuple[Storage, str]:
    """The storage holding one configured file and the file's key in it (``data/taxi_zone_lookup.csv``)."""
    text = str(value).strip().rstrip("/")
    folder, _, name = text.rpartition("/")
    if not name:
        raise ValueError(f"{value!r}: not the location of a file")
    if is_s3_url(text) and folder.count("/") < 2:  # s3://bucket/name.csv: the bucket is the folder
        folder = text[: -len(name) - 1]
    return open_storage(folder or ".", base, s3, hash_cache), name


def open_spec(spec: dict[str, Any]) -> Storage:
    """The storage a :meth:`Storage.spec` describes (in a process that did not read the configuration)."""
    from tripduration.io.s3 import S3Settings

    return open_storage(spec["url"], s3=S3Settings(**spec["s3"]) if spec.get("s3") else None)
