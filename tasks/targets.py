"""Where outputs go and how they are read and written, on local disk or on S3.

Paths: ``[paths]`` values are project-relative folders or ``s3://`` prefixes (:func:`location`); a task's
outputs are ``file_target`` / ``folder_output`` of a path under :func:`work_root`. Writes are atomic
(:func:`atomic_path`: a temporary name beside the target, renamed or uploaded only if the block succeeds).
Formats: :func:`dump` and :func:`load` write and read an output by its suffix (``.json``, ``.parquet``,
``.joblib``), so a task's ``run()`` says what, not how.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi
import luigi.rpc

from tasks.settings import PathsConfig

if TYPE_CHECKING:
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_path(value: str) -> Path:
    """A configured path; relative paths are relative to the project root, not the working directory."""
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else PROJECT_ROOT / path


def is_s3_url(value: object) -> bool:
    """``s3://bucket/prefix``: a location in an S3-compatible store (see docs/object-storage.md)."""
    return str(value).startswith("s3://")


class S3Url(str):
    """An ``s3://bucket/key`` URL with the few ``Path`` operations output paths use (``/``, ``name``,
    ``parent``, ``with_name``). ``Path("s3://b/k")`` would collapse the ``//`` and make a local path."""

    def __truediv__(self, other: object) -> S3Url:
        return S3Url(f"{self.rstrip('/')}/{str(other).lstrip('/')}")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Url:
        return S3Url(self.rstrip("/").rsplit("/", 1)[0])

    def with_name(self, name: str) -> S3Url:
        return self.parent / name


def location(value: str) -> Path | S3Url:
    """A configured ``[paths]`` value: an :class:`S3Url` for ``s3://``, else :func:`project_path`."""
    return S3Url(str(value).rstrip("/")) if is_s3_url(value) else project_path(value)


def work_root() -> Path | S3Url:
    """``[paths] work_dir``: a local folder or an ``s3://`` prefix."""
    return location(PathsConfig().work_dir)


def file_target(path: Path | str) -> luigi.target.FileSystemTarget:
    """One output file: ``LocalTarget``, or an ``S3Target`` for an ``s3://`` URL (luigi.contrib.s3 and
    boto3 are imported only then, so local runs do not pay for them)."""
    if is_s3_url(path):
        from tasks.s3_targets import target_for

        return target_for(str(path))
    return luigi.LocalTarget(str(path))


def folder_output(path: Path | str) -> luigi.target.FileSystemTarget:
    """One output folder: ``LocalTarget`` (appears by one rename), or an ``S3FlagTarget`` (``_SUCCESS`` last)."""
    if is_s3_url(path):
        from tasks.s3_targets import folder_target

        return folder_target(str(path))
    return luigi.LocalTarget(str(path).rstrip("/"))


def open_registry(name: str) -> Any:
    """The ``ModelRegistry`` of ``name`` under ``[paths] registry_dir``; for ``s3://`` with the same boto3
    settings (``[s3]``, AWS environment) as luigi's targets."""
    from tripduration.registry.store import ModelRegistry

    root = str(PathsConfig().registry_dir)
    if is_s3_url(root):
        from tasks.s3_targets import storage_from_config

        return ModelRegistry(root, name, storage=storage_from_config(f"{root.rstrip('/')}/{name}"))
    return ModelRegistry(project_path(root), name)


def is_remote(target: object) -> bool:
    """True for luigi.contrib.s3 targets (the module is not imported for a local target)."""
    return type(target).__module__ == "luigi.contrib.s3"


def content_cache_dir() -> Path:
    """Where the sha256 of input files is cached beside their stat key (see :mod:`tripduration.io.content`).

    With an ``s3://`` work directory: a local folder (``$XDG_CACHE_HOME`` or ``~/.cache``) keyed by the work
    directory's URL. The cache only saves rehashing local files; each host keeps its own.
    """
    root = work_root()
    if isinstance(root, S3Url):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "tripduration" / "content-sha256" / hashlib.sha256(root.encode()).hexdigest()[:16]
    return root / ".content-sha256"


def s3_identity(target: luigi.target.FileSystemTarget) -> str | None:
    """Content identity of an S3 object without reading it: its ETag and size (None if it does not exist).

    Cheap (one HEAD) where hashing would download the whole month. The ETag changes whenever the object is
    rewritten with other bytes (it is the MD5 of the body for a single PUT, of the parts for a multipart
    upload), so a file replaced under the same name still makes new downstream outputs; the sha256 of the
    bytes actually read is recorded by the consumer (``ValidatedTrips``' summary).
    """
    from tripduration.io.storage import parse_s3_url

    bucket, key = parse_s3_url(target.path)
    try:
        head = target.fs.s3.meta.client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore ClientError; 404 means absent
        if "404" in str(exc) or "Not Found" in str(exc):
            return None
        raise
    etag = head["ETag"].strip('"')
    return f"etag={etag},bytes={head['ContentLength']}"


@contextlib.contextmanager
def atomic_path(target: luigi.target.FileSystemTarget) -> Iterator[str]:
    """Yield a temporary path beside ``target``; move it over ``target`` only if the block succeeds.

    Like ``LocalTarget.temporary_path`` (same ``-luigi-tmp-`` naming, same folder so the rename is atomic),
    but it removes the temporary file or folder when the block raises, and it replaces an existing output
    (left by a run that was killed after writing some, not all, of a task's outputs) instead of failing.
    An S3 target is written in local scratch and uploaded only if the block succeeds
    (``tasks.s3_targets.atomic_output_path``), so every task writes the same way to both places.
    """
    if is_remote(target):
        from tasks.s3_targets import atomic_output_path

        with atomic_output_path(target) as tmp:
            yield tmp
        return
    final = target.path.rstrip("/")
    tmp = f"{final}-luigi-tmp-{random.randrange(10**10):010d}"
    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def write_json(target: luigi.target.FileSystemTarget, payload: Any) -> None:
    with target.open("w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)


def read_json(target: luigi.target.FileSystemTarget) -> Any:
    return json.loads(read_bytes(target))


def read_table(target: luigi.target.FileSystemTarget, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet output, local or S3 (column-wise ranged reads with pyarrow's S3 filesystem)."""
    if is_remote(target):
        from tasks.s3_targets import read_parquet_target

        return read_parquet_target(target, columns)
    from tripduration.io.parquet import read_parquet

    return read_parquet(target.path, columns=columns)


def load_model(target: luigi.target.FileSystemTarget) -> Any:
    """A fitted model output, local or S3 (read as bytes: joblib loads from a file object)."""
    import joblib

    if not is_remote(target):
        return joblib.load(target.path)
    return joblib.load(io.BytesIO(read_bytes(target)))


#: how :func:`load` reads and :func:`dump` writes an output, by the suffix of its name
FORMATS = (".json", ".parquet", ".joblib")


def _suffix(target: luigi.target.FileSystemTarget) -> str:
    suffix = Path(str(target.path)).suffix
    if suffix not in FORMATS:
        raise ValueError(f"{target.path}: no format for {suffix or 'a name without suffix'!r}; use one of {FORMATS}")
    return suffix


def load(inputs: Any, columns: list[str] | None = None) -> Any:
    """The content of a task's input(s), read by suffix: ``.json`` -> object, ``.parquet`` -> DataFrame
    (``columns``: only those), ``.joblib`` -> fitted model. Lists and dicts of targets (what ``self.input()``
    returns) give lists and dicts of contents, as gokart's ``load`` does."""
    if isinstance(inputs, dict):
        return {key: load(value, columns) for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [load(value, columns) for value in inputs]
    suffix = _suffix(inputs)
    if suffix == ".json":
        return read_json(inputs)
    if suffix == ".parquet":
        return read_table(inputs, columns)
    return load_model(inputs)


def dump(outputs: Any, content: Any) -> None:
    """Write ``content`` to a task's output(s) atomically, by suffix: ``.json`` (sorted keys), ``.parquet``
    (a DataFrame), ``.joblib`` (compressed). A dict of targets takes a dict of contents with the same keys."""
    if isinstance(outputs, dict):
        missing = set(outputs) - set(content)
        if missing:
            raise ValueError(f"no content for the outputs {sorted(missing)}")
        for key, target in outputs.items():
            dump(target, content[key])
        return
    suffix = _suffix(outputs)
    if suffix == ".json":
        write_json(outputs, content)
        return
    with atomic_path(outputs) as tmp:
        if suffix == ".parquet":
            from tripduration.io.parquet import write_parquet

            write_parquet(content, tmp)
        else:
            import joblib

            joblib.dump(content, tmp, compress=3)


def dump_folder(output: luigi.target.FileSystemTarget, write: Callable[[Path], object]) -> None:
    """Create a folder output atomically: ``write(folder)`` fills a fresh temporary folder, which becomes the
    output only if it returns (renamed locally; uploaded with its ``_SUCCESS`` flag last on S3)."""
    with atomic_path(output) as tmp:
        Path(tmp).mkdir()
        write(Path(tmp))


def read_bytes(target: luigi.target.FileSystemTarget) -> bytes:
    """The content of a file output, local or S3 (``FileNotFoundError`` if it does not exist)."""
    if not is_remote(target):
        return Path(target.path).read_bytes()
    from tripduration.io.storage import parse_s3_url

    bucket, key = parse_s3_url(target.path)
    client = target.fs.s3.meta.client
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        raise FileNotFoundError(f"{target.path}: no such object") from None


@contextlib.contextmanager
def local_copy(target: luigi.target.FileSystemTarget, if_identity: str | None = None) -> Iterator[str]:
    """A local path holding ``target``'s content, for readers that need a path (joblib, hashing, folders).

    Local targets: the path itself. S3: the object (or, for a folder target, every object under its
    prefix but the flag) is downloaded into a fresh scratch folder under ``TMPDIR``, under the same base
    name, and removed after the block. ``if_identity`` (from :func:`s3_identity`): download only those
    bytes (``If-Match`` on the ETag), so a file replaced since the graph was built is refused, not read.
    """
    if not is_remote(target):
        yield target.path
        return
    import tempfile

    scratch = tempfile.mkdtemp(prefix="luigi-s3-input-")
    try:
        local = os.path.join(scratch, S3Url(target.path).name or "input")
        _download(target, local, if_identity)
        yield local
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _download(target: luigi.target.FileSystemTarget, local: str, if_identity: str | None) -> None:
    from tripduration.io.storage import parse_s3_url

    client = target.fs.s3.meta.client
    bucket, key = parse_s3_url(target.path)
    flag = getattr(target, "flag", None)
    if flag is None:
        condition = {"IfMatch": '"' + if_identity.split(",")[0].removeprefix("etag=") + '"'} if if_identity else {}
        try:
            body = client.get_object(Bucket=bucket, Key=key, **condition)["Body"]
            with open(local, "wb") as fh:
                shutil.copyfileobj(body, fh, 1 << 20)
        except Exception as exc:
            if "412" in str(exc) or "PreconditionFailed" in str(exc):
                raise RuntimeError(
                    f"{target.path} changed while the pipeline was running ({if_identity} when the run started); "
                    "nothing was written. Run the same command again: it will process the new content."
                ) from exc
            raise
        return
    prefix = key.rstrip("/") + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if relative and relative != flag:
                dest = os.path.join(local, relative)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                client.download_file(bucket, item["Key"], dest)
