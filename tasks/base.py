"""The base task: the output path convention (fingerprints), input content in fingerprints, invalidation marks.

Output paths follow gokart's idea: ``<work_dir>/<TaskFamily>/<readable params>-<hash>/<file>``, where the
hash covers the task family, the code it runs (:meth:`PipelineTask.code_digest`), its significant parameters,
the values of the config sections it declares in ``fingerprint_configs``, and (recursively) the fingerprints
of the tasks it requires. So a changed parameter, rule threshold or function body makes new outputs instead of
reusing stale ones, while everything upstream that did not change is reused.

The code a task runs, as gokart hashes a task's definition: the source of the task class and of its bases, and
of every function, class and constant of ``tripduration`` and ``tasks`` they reach, transitively (its stage
function and what that calls; :mod:`tripduration.runtime.code_digest`), read once per process. Editing the body
of ``concat_tables`` gives new folders to the tasks that call it and to their downstream, and to nothing else;
a comment, a docstring or a reformatting gives none. Not part of it: the tasks it requires (their own
fingerprints are), the code of source files (:class:`SourceFile`: their content is), and the plumbing that
stores, schedules or reports and never decides what a task computes (:data:`NOT_RESULT_CODE`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
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
from tasks.targets import Output, work_storage
from tripduration.io import Storage
from tripduration.runtime.code_digest import CodeDigest

# --------------------------------------------------------------------------- base task
_SAFE = re.compile(r"[^A-Za-z0-9.=_,-]+")

#: modules outside every code digest: this path convention, reading and writing outputs (a faithful round trip,
#: tested in tests/storage), the runner, lock and process set-up, threads and progress messages. An edit there
#: reruns nothing; one that changes what a task computes belongs in its stage function (or needs
#: ``pipeline.py invalidate``)
NOT_RESULT_CODE = ("tasks.base", "tasks.targets", "tasks.ops", "tripduration.runtime")


def _has_own_fingerprint(obj: object) -> bool:
    """A task named in another's code (what it requires): its own fingerprint, in the upstream keys, covers its
    code. Config sections are read as code (their values are in ``fingerprint_configs``)."""
    return isinstance(obj, type) and issubclass(obj, luigi.Task) and not issubclass(obj, luigi.Config)


_CODE = CodeDigest(packages=("tripduration", "tasks"), excluded=NOT_RESULT_CODE, boundary=_has_own_fingerprint)


class PipelineTask(luigi.Task):
    """Base of every task that writes files: owns the path convention and atomic writes."""

    #: config sections whose values change this task's result
    fingerprint_configs: ClassVar[tuple[type[luigi.Config], ...]] = ()
    #: project code the task runs without naming it: a task that predicts with a model it loads runs the code
    #: the model was pickled with by reference (its feature step, its encoders), reached from ``build_pipeline``
    runs_also: ClassVar[tuple[Callable[..., Any], ...]] = ()
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

    def invalidation_key(self) -> str:
        """The name ``pipeline.py invalidate`` marks this task under (its task id)."""
        return self.task_id

    def fingerprint(self) -> str:
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            payload = {
                "family": self.task_family,
                **self.code_key(),
                "params": self.to_str_params(only_significant=True),
                # keyed by section name (as before the classes moved to tasks.settings): same fingerprints
                "configs": {c.get_task_family(): c().to_str_params() for c in self.fingerprint_configs},
                "upstream": sorted(dependency_key(t) for t in flatten(self.requires())),
            }
            salt = invalidation_salt(self.invalidation_key())
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

    @classmethod
    def code_digest(cls) -> str:
        """sha256 (hex) of the code this task class runs: its source, its bases', ``runs_also`` and every project
        definition they reach (see the module docstring); computed once per class and process."""
        return _CODE.digest(cls, *cls.runs_also)

    def code_key(self) -> dict[str, str | int]:
        """The code's part of the fingerprint: the digest of the code the task runs. A source file is keyed by
        its content instead (:class:`SourceFile`), and keeps the constant earlier releases hashed, so a month
        they downloaded keeps its folder and is not downloaded again."""
        return {"code_version": 1} if isinstance(self, SourceFile) else {"code": self.code_digest()}

    def readable_name(self) -> str:
        params = self.to_str_params(only_significant=True)
        text = "_".join(f"{v}" for _, v in sorted(params.items())) or "default"
        return _SAFE.sub("-", text)[:80]

    def output_dir(self) -> str:
        """The key of this task's output folder in the work storage: ``<TaskFamily>/<params>-<fingerprint>``."""
        return f"{self.task_family}/{self.readable_name()}-{self.fingerprint()}"

    def storage(self) -> Storage:
        """``[paths] work_dir``'s storage, as it was when this task was made (asked at every completeness check)."""
        cached = self.__dict__.get("_storage")
        if cached is None:
            cached = self.__dict__["_storage"] = work_storage()
        return cached

    def target(self, name: str) -> Output:
        """An output file of this task, in ``[paths] work_dir`` (a local folder or an object-storage prefix)."""
        return Output(self.storage(), f"{self.output_dir()}/{name}")

    def folder(self, name: str) -> Output:
        """An output folder of this task (a report): it exists once it is complete."""
        return Output(self.storage(), f"{self.output_dir()}/{name}", folder=True)

    def on_failure(self, exception: BaseException) -> str:
        """The explanation luigi sends to the scheduler (web view, failure mails); write errors are also logged."""
        explained = explain_write_error(exception)
        if explained is None:
            return super().on_failure(exception)
        logging.getLogger("luigi-interface").error("%s failed: %s", self, explained)
        return explained

    def progress_with(self, prefix: str) -> Callable[[str, int], None]:
        """A progress callback for a node function: its messages are shown after ``prefix: ``. A node reports
        progress between its phases, so that is also when the task takes up cores another task left idle
        (:func:`tasks.ops.process.use_idle_cores`: e.g. the largest candidate's scoring, once the other
        candidates are done)."""

        def report(message: str, percent: int) -> None:
            self.progress(f"{prefix}: {message}" if prefix else message, percent)
            process.use_idle_cores(self)

        return report

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


#: the invalidation marks of ``pipeline.py invalidate``, in the work storage
INVALIDATIONS = ".invalidated.json"
_INVALIDATIONS: dict[str, tuple[str | None, dict[str, Any]]] = {}


def invalidation_marks() -> dict[str, Any]:
    """The marks ``pipeline.py invalidate`` left (task id -> mark), read again only when the file changed
    (one stat or HEAD per task of a graph, not one read)."""
    storage = work_storage()
    token = storage.change_token(INVALIDATIONS)
    cached = _INVALIDATIONS.get(storage.url)
    if cached is None or cached[0] != token:
        marks: Any = {}
        if token is not None:
            try:
                marks = json.loads(storage.read_bytes(INVALIDATIONS))
            except FileNotFoundError:
                marks = {}
            except ValueError as exc:
                raise RuntimeError(
                    f"{storage.url_for(INVALIDATIONS)}: unreadable ({exc}); delete it to forget past invalidations"
                ) from exc
        cached = _INVALIDATIONS[storage.url] = (token, marks if isinstance(marks, dict) else {})
    return cached[1]


def invalidation_salt(task_id: str) -> str | None:
    """The mark ``pipeline.py invalidate`` left for ``task_id`` (None for almost every task)."""
    salt = invalidation_marks().get(task_id)
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
    then record the digest of what they actually read, and the next run keys them by content. The code that
    fetches the file is not part of its fingerprint (its content is what its consumers depend on).
    """

    def content_identity(self) -> str | None:
        """What stands for the file's content when the graph was built (None if it did not exist then): its
        sha256 on local disk (cached by stat key), its ETag and size in object storage (one HEAD)."""
        if "_content_identity" not in self.__dict__:
            self.__dict__["_content_identity"] = self.output().identity()  # type: ignore[attr-defined]
        return self.__dict__["_content_identity"]

    def pinned_copy(self) -> contextlib.AbstractContextManager[Path]:
        """A local path with the file's content: the bytes the graph was built on (object storage downloads
        exactly those, If-Match on the ETag), so they are hashed and read from the same copy."""
        return self.output().local_copy(self.content_identity())  # type: ignore[attr-defined]

    def check_read(self, actual_sha256: str) -> None:
        """Refuse to record results of a file that changed after the graph was built (its identity is in the
        fingerprint of the consumer's output path): the outputs would describe other bytes than their path says."""
        target, expected = self.output(), self.content_identity()  # type: ignore[attr-defined]
        if expected is not None and not target.storage.confirms(expected, actual_sha256):
            raise RuntimeError(
                f"{target.path} changed while the pipeline was running (sha256 {expected[:12]}... when the "
                f"run started, {actual_sha256[:12]}... when read); nothing was written. Run the same command "
                "again: it will process the new content."
            )

    def dependency_key(self) -> str:
        own = self.fingerprint() if isinstance(self, PipelineTask) else self.task_id  # type: ignore[attr-defined]
        return f"{own}:sha256={self.content_identity() or 'absent'}"


# every task, in the process that runs it: thread limits for the cores it holds, death with its worker
PipelineTask.event_handler(luigi.Event.START)(process.prepare_task_process)
