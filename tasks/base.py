"""Shared Luigi wiring: configuration sections, parameter types and the output path convention.

Output paths follow gokart's idea: ``<work_dir>/<TaskFamily>/<readable params>-<hash>/<file>``, where the
hash covers the task family, its ``code_version``, its significant parameters, the values of the config
sections it declares in ``fingerprint_configs``, and (recursively) the fingerprints of the tasks it requires.
So a changed parameter, rule threshold or bumped code version makes new outputs instead of reusing stale
ones, while everything upstream that did not change is reused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import luigi
import luigi.rpc
from luigi.task import flatten

from tasks.settings import ParallelismConfig, PathsConfig
from tripduration import threads as native_threads
from tripduration.content import content_sha256
from tripduration.months import COLORS, format_month, parse_month, parse_month_list

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
    from tripduration.registry import ModelRegistry

    root = str(PathsConfig().registry_dir)
    if is_s3_url(root):
        from tasks.s3_targets import storage_from_config

        return ModelRegistry(root, name, storage=storage_from_config(f"{root.rstrip('/')}/{name}"))
    return ModelRegistry(project_path(root), name)


def is_remote(target: object) -> bool:
    """True for luigi.contrib.s3 targets (the module is not imported for a local target)."""
    return type(target).__module__ == "luigi.contrib.s3"


# --------------------------------------------------------------------------- configuration sections
# --------------------------------------------------------------------------- parameters
class ColorParameter(luigi.ChoiceParameter):
    """Taxi colour; only known colours are accepted, so the value is safe in paths and URLs."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("choices", COLORS)
        kwargs.setdefault("var_type", str)
        kwargs.setdefault("default", "green")
        kwargs.setdefault("description", f"taxi colour, one of {', '.join(COLORS)}")
        super().__init__(**kwargs)


class MonthParameter(luigi.MonthParameter):
    """A month ``YYYY-MM`` whose parse errors say what is wrong (``2021-13``: month number 13...)."""

    def parse(self, s: str) -> dt.date:
        return parse_month(s)


class MonthListParameter(luigi.Parameter):
    """Months as ``2021-01,2021-02`` or a range ``2021-01..2021-03``; a sorted tuple of dates."""

    def parse(self, x: str) -> tuple[dt.date, ...]:
        return parse_month_list(x)

    def normalize(self, x: Any) -> tuple[dt.date, ...]:
        return parse_month_list(x) if not isinstance(x, tuple) or not all(isinstance(m, dt.date) for m in x) else x

    def serialize(self, x: Any) -> str:
        return ",".join(format_month(m) for m in parse_month_list(x))


# --------------------------------------------------------------------------- base task
_SAFE = re.compile(r"[^A-Za-z0-9.=_,-]+")


class PipelineTask(luigi.Task):
    """Base of every task that writes files: owns the path convention and atomic writes."""

    #: bump when the task's logic changes, so its old outputs are no longer taken as current
    code_version: ClassVar[int] = 1
    #: config sections whose values change this task's result
    fingerprint_configs: ClassVar[tuple[type[luigi.Config], ...]] = ()
    #: True for tasks whose native code scales with cores and that run alone on the critical path (final
    #: refit, evaluation, registration, batch prediction): with ``--workers`` > 1 they hold every core of
    #: the scheduler's ``cores`` resource and use them all; the other tasks hold one core each and run side
    #: by side (candidates, months)
    all_cores: ClassVar[bool] = False

    def task_cores(self) -> int:
        """Native threads this task uses when it runs in a forked worker process (and cores it asks for)."""
        total = scheduler_cores()
        configured = ParallelismConfig().threads_per_task
        if configured:
            return min(configured, total) if total else configured
        if not total:
            return 1
        return total if self.all_cores else 1

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        return {"cores": self.task_cores()} if scheduler_cores() else {}

    def fingerprint(self) -> str:
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            payload = {
                "family": self.task_family,
                "code_version": self.code_version,
                "params": self.to_str_params(only_significant=True),
                # keyed by section name (as before the classes moved to tasks.settings): same fingerprints
                "configs": {c.get_task_family(): c().to_str_params() for c in self.fingerprint_configs},
                "upstream": sorted(dependency_key(t) for t in flatten(self.requires())),
            }
            salt = invalidation_salt(self.task_id)
            if salt:  # `pipeline.py invalidate`: a new path for this task, so for everything downstream too
                payload["invalidated"] = salt
            blob = json.dumps(payload, sort_keys=True).encode()
            cached = hashlib.sha256(blob).hexdigest()[:12]
            self.__dict__["_fingerprint"] = cached
        return cached

    def dependency_key(self) -> str:
        """What a downstream task's fingerprint records of this task: its fingerprint (source tasks add the
        content of their file, see :class:`SourceFile`)."""
        return self.fingerprint()

    def readable_name(self) -> str:
        params = self.to_str_params(only_significant=True)
        text = "_".join(f"{v}" for _, v in sorted(params.items())) or "default"
        return _SAFE.sub("-", text)[:80]

    def output_dir(self) -> Path | S3Url:
        return work_root() / self.task_family / f"{self.readable_name()}-{self.fingerprint()}"

    def target(self, name: str) -> luigi.target.FileSystemTarget:
        """An output file of this task (local or S3, following ``[paths] work_dir``)."""
        return file_target(self.output_dir() / name)

    def folder(self, name: str) -> luigi.target.FileSystemTarget:
        """An output folder of this task (a report): on S3 it exists once its ``_SUCCESS`` flag does."""
        return folder_output(self.output_dir() / name)

    def on_failure(self, exception: BaseException) -> str:
        """The explanation luigi sends to the scheduler (web view, failure mails); write errors are also logged."""
        explained = explain_write_error(exception)
        if explained is None:
            return super().on_failure(exception)
        logging.getLogger("luigi-interface").error("%s failed: %s", self, explained)
        return explained

    def progress(self, message: str, percent: int | None = None) -> None:
        """Report what the task is doing to the scheduler (shown in luigid's web view).

        Outside a luigi worker (a task's ``run()`` called directly) there is no scheduler to tell: no-op.
        """
        try:
            if callable(self.set_status_message):
                self.set_status_message(message)
            if percent is not None and callable(self.set_progress_percentage):
                self.set_progress_percentage(max(0, min(100, int(percent))))
        except luigi.rpc.RPCError as exc:
            # luigid is gone: the task's work is still good; the worker reports the loss once (tasks.runner)
            logging.getLogger("luigi-interface").debug("progress not reported: %s", exc)


def invalidations_file() -> Path | S3Url:
    return work_root() / ".invalidated.json"


_INVALIDATIONS: dict[str, Any] = {"stamp": None, "salts": {}}
_REMOTE_INVALIDATIONS: dict[str, dict[str, Any]] = {}


def _remote_invalidations(url: str) -> dict[str, Any]:
    """The invalidation marks of an ``s3://`` work directory, read once per process (one GET, not one per
    task): a run sees the marks that existed when it started, as a local run sees the file's content."""
    if url not in _REMOTE_INVALIDATIONS:
        try:
            salts = json.loads(read_bytes(file_target(url)))
        except FileNotFoundError:
            salts = {}
        except ValueError as exc:
            raise RuntimeError(f"{url}: unreadable ({exc}); delete it to forget past invalidations") from exc
        _REMOTE_INVALIDATIONS[url] = salts if isinstance(salts, dict) else {}
    return _REMOTE_INVALIDATIONS[url]


def invalidation_salt(task_id: str) -> str | None:
    """The mark ``pipeline.py invalidate`` left for ``task_id`` (None for almost every task).

    The file is read again only when its stat changes, so a graph of hundreds of tasks costs one ``stat`` each.
    """
    path = invalidations_file()
    if isinstance(path, S3Url):
        salt = _remote_invalidations(str(path)).get(task_id)
        return str(salt) if salt else None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp_now = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    if _INVALIDATIONS["stamp"] != stamp_now:
        try:
            salts = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{path}: unreadable ({exc}); delete it to forget past invalidations") from exc
        _INVALIDATIONS.update(stamp=stamp_now, salts=salts if isinstance(salts, dict) else {})
    salt = _INVALIDATIONS["salts"].get(task_id)
    return str(salt) if salt else None


def dependency_key(task: luigi.Task) -> str:
    """A required task's part of a fingerprint: pipeline and source tasks say what they hold, others their id."""
    key = getattr(task, "dependency_key", None)
    return key() if callable(key) else task.task_id


def content_cache_dir() -> Path:
    """Where the sha256 of input files is cached beside their stat key (see :mod:`tripduration.content`).

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
    from tripduration.storage import parse_s3_url

    bucket, key = parse_s3_url(target.path)
    try:
        head = target.fs.s3.meta.client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore ClientError; 404 means absent
        if "404" in str(exc) or "Not Found" in str(exc):
            return None
        raise
    etag = head["ETag"].strip('"')
    return f"etag={etag},bytes={head['ContentLength']}"


class SourceFile:
    """Mixin of the tasks whose output is an input file of the pipeline (a raw month, the zone lookup).

    Downstream fingerprints include the sha256 of the file's content (:meth:`dependency_key`), so a file
    replaced under the same name makes new outputs for everything that read it. The digest is taken once
    per task instance, when the graph is built (``tasks.runner`` downloads missing files before that), and
    comes from a cache keyed by the file's size, mtime, inode and device, so a no-op rerun reads nothing.
    A file that does not exist yet (to be downloaded by this run) is keyed as ``absent``: its consumers
    then record the digest of what they actually read, and the next run keys them by content.
    """

    def content_sha256(self) -> str | None:
        """sha256 of the file when the graph was built (None if it did not exist then)."""
        if "_content_sha256" not in self.__dict__:
            target = self.output()  # type: ignore[attr-defined]
            if is_remote(target):  # an S3 object: its ETag and size stand for its content (s3_identity)
                self.__dict__["_content_sha256"] = s3_identity(target)
                return self.__dict__["_content_sha256"]
            path = target.path
            self.__dict__["_content_sha256"] = (
                content_sha256(path, content_cache_dir()) if os.path.isfile(path) else None
            )
        return self.__dict__["_content_sha256"]

    def dependency_key(self) -> str:
        own = self.fingerprint() if isinstance(self, PipelineTask) else self.task_id  # type: ignore[attr-defined]
        return f"{own}:sha256={self.content_sha256() or 'absent'}"


@contextlib.contextmanager
def atomic_path(target: luigi.LocalTarget) -> Iterator[str]:
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


def write_json(target: luigi.LocalTarget, payload: Any) -> None:
    with target.open("w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)


def read_json(target: luigi.target.FileSystemTarget) -> Any:
    return json.loads(read_bytes(target))


def read_bytes(target: luigi.target.FileSystemTarget) -> bytes:
    """The content of a file output, local or S3 (``FileNotFoundError`` if it does not exist)."""
    if not is_remote(target):
        return Path(target.path).read_bytes()
    from tripduration.storage import parse_s3_url

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
    from tripduration.storage import parse_s3_url

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


def scheduler_cores() -> int:
    """Total of the scheduler's ``cores`` resource for this run, 0 if it has none.

    ``tasks.runner.run`` sets ``[resources] cores`` before building: for the local scheduler the CPUs this
    process may use (unless luigi.cfg sets it), for luigid the total luigid reports (``bin/scheduler``
    gives it one). Tasks then ask for cores (:attr:`PipelineTask.all_cores`), so the scheduler never runs
    more threads than cores. Without the resource (the bare ``luigi`` command, a luigid without it) tasks
    ask for none, and forked tasks use one thread each.
    """
    return luigi.configuration.get_config().getint("resources", "cores", 0)


def usable_cpus() -> int:
    """CPUs this process can really get: the affinity mask, capped by the cgroup CPU quota if there is one.

    ``pipeline.py`` offers this many ``cores`` to the local scheduler; see ``tripduration/threads.py``.
    """
    return native_threads.usable_cpus()


@PipelineTask.event_handler(luigi.Event.START)
def _prepare_task_process(task: PipelineTask) -> None:
    """Runs at the start of every task, in the process that runs it (a forked child with ``--workers`` > 1)."""
    import multiprocessing

    forked = multiprocessing.current_process().name != "MainProcess"
    if forked:
        _die_with_parent()
    # Normally a no-op: the entry point (pipeline.py) already set passive OpenMP waiting before scikit-learn
    # loaded, and a forked task inherits it. A process that imported the tasks another way gets one warning
    # here, and the processes it starts get the setting.
    native_threads.prepare_process()
    _limit_native_threads(task, forked)


def _limit_native_threads(task: PipelineTask, forked: bool) -> None:
    """OpenMP threads: the cores the task holds, never more than the CPUs free right now; BLAS: one.

    A process that runs tasks itself (one worker) may use every usable CPU. Either way a task on a shared,
    busy machine starts fewer threads (:func:`tripduration.threads.free_cpus`): CPU contention then slows it
    in proportion, instead of making its threads wait for each other at every barrier. An operator's
    ``OMP_NUM_THREADS`` is respected as an upper bound.
    """
    from threadpoolctl import threadpool_limits

    # BLAS always single-threaded: multi-threaded reductions change the last digits of linear models'
    # coefficients with the thread count, and the same inputs must give the same metrics with any --workers.
    threadpool_limits(limits=1, user_api="blas")
    wanted = task.task_cores() if forked or ParallelismConfig().threads_per_task else usable_cpus()
    operator = os.environ.get("OMP_NUM_THREADS", "")
    if operator.isdigit() and int(operator) > 0:
        wanted = min(wanted, int(operator))
    threads = max(1, min(wanted, usable_cpus(), native_threads.free_cpus()))
    # applies process-wide until changed; every task sets it at its start
    threadpool_limits(limits=threads, user_api="openmp")
    task.__dict__["_openmp_threads"] = threads


def _die_with_parent() -> None:
    """Make a forked task process die when the worker that forked it dies (Linux ``PR_SET_PDEATHSIG``).

    Without it, a task process outlives a worker killed with SIGKILL, finishes its task and holds the work
    directory's lock while the next run starts. With it, the task dies too and the rerun redoes it.
    """
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: keep luigi's behaviour
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def explain_write_error(exc: BaseException) -> str | None:
    """A clear message for the write failures an operator can fix (full disk, permissions), else None."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        where = exc.filename or project_path(PathsConfig().work_dir)
        return (
            f"cannot write {where}: {_WRITE_ERRNOS[exc.errno]} ({exc.strerror}). Free space or fix the "
            f"permissions of {project_path(PathsConfig().work_dir)} / "
            f"{project_path(PathsConfig().registry_dir)} and run again: outputs written before are intact and "
            "will not be redone."
        )
    return None


def sweep_orphans(roots: list[Path], older_than_seconds: float = 0.0) -> list[Path]:
    """Remove temporary files left by killed runs under ``roots``: ``*-luigi-tmp-*``, ``.staging-*``, ``.*.tmp``.

    Call it only while no other run can be writing under ``roots`` (under the work-directory lock), or with
    ``older_than_seconds`` large enough that nothing still being written can match.
    """
    import time

    removed: list[Path] = []
    cutoff = time.time() - older_than_seconds
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            name = path.name
            orphan = "-luigi-tmp-" in name or (
                name.startswith(".") and (name.startswith(".staging-") or name.endswith(".tmp"))
            )
            if not orphan:
                continue
            try:
                if path.lstat().st_mtime > cutoff:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except FileNotFoundError:
                continue
    return removed
