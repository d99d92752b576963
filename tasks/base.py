"""The base task: the output path convention (fingerprints), input content in fingerprints, invalidation marks.

Output paths follow gokart's idea: ``<work_dir>/<TaskFamily>/<readable params>-<hash>/<file>``, where the
hash covers the task family, its ``code_version``, its significant parameters, the values of the config
sections it declares in ``fingerprint_configs``, and (recursively) the fingerprints of the tasks it requires.
So a changed parameter, rule threshold or bumped code version makes new outputs instead of reusing stale
ones, while everything upstream that did not change is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import luigi
import luigi.rpc
from luigi.task import flatten

from tasks.ops import process
from tasks.ops.process import explain_write_error, scheduler_cores
from tasks.settings import ParallelismConfig
from tasks.targets import (
    S3Url,
    content_cache_dir,
    file_target,
    folder_output,
    is_remote,
    local_copy,
    read_bytes,
    s3_identity,
    work_root,
)
from tripduration.io.content import content_sha256

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

    def progress_with(self, prefix: str) -> Callable[[str, int], None]:
        """A progress callback for a node function: its messages are shown after ``prefix: ``."""
        return lambda message, percent: self.progress(f"{prefix}: {message}" if prefix else message, percent)

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
            # luigid is gone: the task's work is still good; the worker reports the loss once (tasks.ops.runner)
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


class SourceFile:
    """Mixin of the tasks whose output is an input file of the pipeline (a raw month, the zone lookup).

    Downstream fingerprints include the sha256 of the file's content (:meth:`dependency_key`), so a file
    replaced under the same name makes new outputs for everything that read it. The digest is taken once
    per task instance, when the graph is built (``tasks.ops.runner`` downloads missing files before that), and
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

    def pinned_copy(self) -> contextlib.AbstractContextManager[str]:
        """A local path with the file's content; on S3 only the bytes the graph was built on (If-Match on
        the ETag), downloaded once to local scratch, so they are hashed and read from the same copy."""
        target = self.output()  # type: ignore[attr-defined]
        return local_copy(target, self.content_sha256() if is_remote(target) else None)

    def check_read(self, actual_sha256: str) -> None:
        """Refuse to record results of a file that changed after the graph was built (its digest is in the
        fingerprint of the consumer's output path): the outputs would describe other bytes than their path says."""
        target = self.output()  # type: ignore[attr-defined]
        expected = self.content_sha256()
        if is_remote(target):  # identity is the ETag, checked by the download itself (If-Match)
            return
        if expected is not None and expected != actual_sha256:
            raise RuntimeError(
                f"{target.path} changed while the pipeline was running (sha256 {expected[:12]}... when the "
                f"run started, {actual_sha256[:12]}... when read); nothing was written. Run the same command "
                "again: it will process the new content."
            )

    def dependency_key(self) -> str:
        own = self.fingerprint() if isinstance(self, PipelineTask) else self.task_id  # type: ignore[attr-defined]
        return f"{own}:sha256={self.content_sha256() or 'absent'}"


# every task, in the process that runs it: thread limits for the cores it holds, death with its worker
PipelineTask.event_handler(luigi.Event.START)(process.prepare_task_process)
