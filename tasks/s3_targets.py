"""Luigi outputs that live in S3 (or a local folder) and stay atomic: the luigi side of ``tripduration.io.storage``.

Why each piece:

- a file output is a ``luigi.contrib.s3.S3Target``: its ``open('w')`` writes a local temporary file and
  uploads it on close (nothing is uploaded when the ``with`` block raises), and S3 shows an object only
  when its PUT (or multipart upload) completed, so a reader sees all of it or nothing;
- a folder output (a report with plots, a partitioned table) cannot be one object, so it is an
  ``S3FlagTarget``: the files are uploaded first and ``_SUCCESS`` last, and the target exists only when the
  flag does (:func:`upload_folder`);
- tools that write to a *path* (``to_parquet``, ``joblib.dump``, a folder of plots) write into a local
  scratch path and :func:`atomic_output_path` uploads the result only if the block succeeded. For a
  ``LocalTarget`` it is ``tasks.targets.atomic_path``, so a task can use one call for both places;
- a task with several outputs is complete only when all exist (luigi's ``complete()``); each output being
  atomic, a task killed after writing some of them is incomplete and "run the same command again" redoes it.

Endpoint and credentials: ``S3Client`` passes luigi.cfg's ``[s3]`` section (``endpoint_url``,
``aws_access_key_id``, ``aws_secret_access_key``, ``region_name``) to boto3, which falls back to the standard
AWS environment variables (``AWS_ENDPOINT_URL`` included) for anything the section does not set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import luigi
from luigi.contrib.s3 import S3Client, S3FlagTarget, S3Target

from tripduration.io.storage import S3Storage, Storage, arrow_s3_filesystem, is_s3_url, parse_s3_url, storage_for

#: the flag a folder output's uploader writes last (luigi's S3FlagTarget default)
FLAG = "_SUCCESS"


_CLIENTS: dict[tuple[int, tuple[tuple[str, str], ...]], S3Client] = {}


def s3_client() -> S3Client:
    """luigi's S3 client, configured from ``[s3]`` in luigi.cfg and the AWS environment variables.

    One per process and ``[s3]`` settings: each ``S3Client`` builds its own boto3 resource on first use
    (measured against moto: ``S3Target(url).exists()`` 24 ms with a new client each time, 10 ms with a
    shared one), and a no-op rerun checks every output. Keyed by pid too, because luigi forks task
    processes and a client's connection pool must not be shared across a fork.
    """
    config = luigi.configuration.get_config()
    settings = tuple(sorted(config.items("s3"))) if config.has_section("s3") else ()
    key = (os.getpid(), settings)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = S3Client()
    return client


def _boto3(client: S3Client | None) -> Any:
    return (client or s3_client()).s3.meta.client


def target_for(path_or_url: str | Path, client: S3Client | None = None) -> luigi.target.FileSystemTarget:
    """One output file: ``S3Target`` for ``s3://...``, ``LocalTarget`` otherwise."""
    text = str(path_or_url)
    if is_s3_url(text):
        parse_s3_url(text)  # a clear error for a malformed URL
        return S3Target(text, client=client or s3_client())
    return luigi.LocalTarget(text)


def folder_target(path_or_url: str | Path, client: S3Client | None = None) -> luigi.target.FileSystemTarget:
    """One output folder: ``S3FlagTarget`` (exists once ``_SUCCESS`` does) for ``s3://``, else ``LocalTarget``
    (a local folder appears by one rename, see ``tasks.targets.atomic_path``)."""
    text = str(path_or_url)
    if is_s3_url(text):
        parse_s3_url(text)
        return S3FlagTarget(text.rstrip("/") + "/", client=client or s3_client(), flag=FLAG)
    return luigi.LocalTarget(text.rstrip("/"))


def storage_from_config(url_or_path: str | Path) -> Storage:
    """``tripduration.io.storage`` for a configured path, using the same boto3 settings as luigi's targets."""
    if is_s3_url(str(url_or_path)):
        return S3Storage(str(url_or_path), client=_boto3(None))
    return storage_for(url_or_path)


def arrow_filesystem_from_config() -> Any:
    """``pyarrow.fs.S3FileSystem`` for the ``[s3]`` endpoint and keys (else the AWS environment variables)."""
    settings = luigi.configuration.get_config()

    def get(key: str) -> str | None:
        return settings.get("s3", key, None) or None

    return arrow_s3_filesystem(
        endpoint_url=get("endpoint_url"),
        access_key=get("aws_access_key_id"),
        secret_key=get("aws_secret_access_key"),
        region=get("region_name"),
    )


def read_parquet_target(target: luigi.target.FileSystemTarget, columns: Sequence[str] | None = None) -> Any:
    """``tripduration.io.parquet.read_parquet`` for a local target; column-wise ranged reads for an S3 one."""
    from tripduration.io.storage import read_parquet_columns

    if isinstance(target, S3Target):
        return read_parquet_columns(target.path, columns, filesystem=arrow_filesystem_from_config())
    return read_parquet_columns(target.path, columns)


# --------------------------------------------------------------------------- uploads
def upload_file(local_path: str | Path, url: str, client: S3Client | None = None) -> None:
    """Upload one local file to ``url`` as one object (boto3 switches to a multipart upload for large files;
    either way the object appears only when the whole upload completed)."""
    bucket, key = parse_s3_url(url)
    if not key:
        raise ValueError(f"{url}: an output file needs a key after the bucket (s3://bucket/path/file)")
    _boto3(client).upload_file(str(local_path), bucket, key)


def _folder_keys(client: Any, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def upload_folder(local_dir: str | Path, url: str, client: S3Client | None = None, flag: str = FLAG) -> list[str]:
    """Upload a local folder to the prefix ``url`` so that it is complete when ``flag`` exists.

    Order: the old flag is removed (a forced rerun must not look complete while half rewritten), every file
    is uploaded, objects left under the prefix by an interrupted earlier attempt and not part of this folder
    are deleted, and the flag is written last. Returns the uploaded keys.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise NotADirectoryError(f"{local_dir}: a folder output must be written as a folder")
    bucket, key = parse_s3_url(url)
    prefix = f"{key}/" if key else ""
    boto = _boto3(client)
    boto.delete_object(Bucket=bucket, Key=prefix + flag)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    if any(p.relative_to(local_dir).as_posix() == flag for p in files):
        raise ValueError(f"{local_dir}: holds a file named {flag!r}, which is the completion flag of the folder")
    uploaded = []
    for path in files:
        object_key = prefix + path.relative_to(local_dir).as_posix()
        boto.upload_file(str(path), bucket, object_key)
        uploaded.append(object_key)
    for stale in sorted(_folder_keys(boto, bucket, prefix) - set(uploaded) - {prefix + flag}):
        boto.delete_object(Bucket=bucket, Key=stale)
    boto.put_object(Bucket=bucket, Key=prefix + flag, Body=b"")
    return uploaded


@contextlib.contextmanager
def atomic_output_path(target: luigi.target.FileSystemTarget) -> Iterator[str]:
    """Yield a local path to write ``target`` into (a file, or a folder for a folder target); publish it
    only if the block succeeds.

    S3 targets: the path is in a fresh local scratch folder (``TMPDIR``), uploaded on success by
    :func:`upload_file` or :func:`upload_folder` and removed either way. Local targets: ``tasks.targets.atomic_path``
    (temporary name beside the target, one rename).
    """
    if not isinstance(target, S3Target):
        from tasks.targets import atomic_path

        with atomic_path(target) as tmp:
            yield tmp
        return
    scratch = tempfile.mkdtemp(prefix="luigi-s3-output-")
    try:
        local = os.path.join(scratch, Path(target.path.rstrip("/")).name or "output")
        yield local
        _publish(local, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _publish(local: str, target: S3Target) -> None:
    if isinstance(target, S3FlagTarget):
        if not os.path.isdir(local):
            raise NotADirectoryError(f"{target.path} is a folder output: write a folder at the yielded path")
        upload_folder(local, target.path, target.fs, flag=target.flag)
    elif os.path.isfile(local):
        upload_file(local, target.path, target.fs)
    elif os.path.isdir(local):
        raise IsADirectoryError(f"{target.path} is a file output; use folder_target() for a folder")
    else:
        raise FileNotFoundError(f"nothing was written at {local} for {target.path}")
