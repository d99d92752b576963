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

from tripduration import threads as native_threads
from tripduration.content import content_sha256
from tripduration.months import COLORS, format_month, parse_month, parse_month_list

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_path(value: str) -> Path:
    """A configured path; relative paths are relative to the project root, not the working directory."""
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else PROJECT_ROOT / path


# --------------------------------------------------------------------------- configuration sections
class paths(luigi.Config):  # noqa: N801 - luigi maps the class name to the [paths] section
    """``[paths]``: where raw inputs are read and everything the pipeline writes goes."""

    raw_dir = luigi.Parameter(default="data", description="raw monthly trip files (read-only inputs)")
    work_dir = luigi.Parameter(default="var/work", description="intermediate outputs of every task")
    registry_dir = luigi.Parameter(default="models", description="file-based model registry")
    zone_lookup = luigi.Parameter(default="data/taxi_zone_lookup.csv", description="TLC taxi zone lookup CSV")


class download(luigi.Config):  # noqa: N801
    """``[download]``: where missing months come from and how hard to try."""

    url_template = luigi.Parameter(
        default="https://d37ci6vzurychx.cloudfront.net/trip-data/{color}_tripdata_{month}.parquet",
        description="URL of a month's file; {color} and {month} (YYYY-MM) are filled in",
    )
    timeout_seconds = luigi.FloatParameter(default=60.0)
    retries = luigi.IntParameter(default=4, description="extra attempts after a transient error")
    backoff_seconds = luigi.FloatParameter(default=2.0, description="first wait; doubles each retry")
    offline = luigi.BoolParameter(
        default=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="never touch the network: a month not on disk is not available (exit 20)",
    )
    probe_timeout_seconds = luigi.FloatParameter(
        default=5.0, description="how long the pre-flight waits for the source to answer for a month"
    )


class validation(luigi.Config):  # noqa: N801
    """``[validation]``: thresholds of the row rules (part of ValidatedTrips' fingerprint)."""

    min_duration_min = luigi.FloatParameter(default=1.0)
    max_duration_min = luigi.FloatParameter(default=60.0)
    max_distance_miles = luigi.FloatParameter(default=100.0)


class model_search(luigi.Config):  # noqa: N801
    """``[model_search]``: the candidates to train and score (each one is its own task)."""

    candidates = luigi.ListParameter(
        default=["baseline_linreg", "ridge_a1", "ridge_a10", "hgb_lr10_l31", "hgb_lr10_l63", "hgb_lr05_l127"]
    )


class training(luigi.Config):  # noqa: N801
    """``[training]``: how much of the training window a fit may use (part of the fits' fingerprints)."""

    max_rows = luigi.IntParameter(
        default=2_000_000,
        description="fit on a seeded sample of at most this many trips (0: every trip)",
    )


class evaluation(luigi.Config):  # noqa: N801
    """``[evaluation]``: cost of the permutation importance in the evaluation report (part of its fingerprint)."""

    importance_rows = luigi.IntParameter(default=5000, description="test trips the importance is computed on")
    importance_repeats = luigi.IntParameter(default=3, description="shuffles per column")


class registry(luigi.Config):  # noqa: N801
    """``[registry]``: the model's name in the registry."""

    model_name = luigi.Parameter(default="{color}-trip-duration")


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
        configured = parallelism().threads_per_task
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
                "configs": {c.__name__: c().to_str_params() for c in self.fingerprint_configs},
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

    def output_dir(self) -> Path:
        return project_path(paths().work_dir) / self.task_family / f"{self.readable_name()}-{self.fingerprint()}"

    def target(self, name: str) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.output_dir() / name))

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


def invalidations_file() -> Path:
    return project_path(paths().work_dir) / ".invalidated.json"


_INVALIDATIONS: dict[str, Any] = {"stamp": None, "salts": {}}


def invalidation_salt(task_id: str) -> str | None:
    """The mark ``pipeline.py invalidate`` left for ``task_id`` (None for almost every task).

    The file is read again only when its stat changes, so a graph of hundreds of tasks costs one ``stat`` each.
    """
    path = invalidations_file()
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
    """Where the sha256 of input files is cached beside their stat key (see :mod:`tripduration.content`)."""
    return project_path(paths().work_dir) / ".content-sha256"


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
            path = self.output().path  # type: ignore[attr-defined]
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
    """
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


def read_json(target: luigi.LocalTarget) -> Any:
    with target.open("r") as fh:
        return json.load(fh)


class parallelism(luigi.Config):  # noqa: N801
    """``[parallelism]``: native threads (OpenMP/BLAS) per task process.

    With ``--workers N`` luigi forks one process per running task; if each also starts one OpenMP thread per
    core, N processes fight over the cores (measured here: a 10 s HistGradientBoosting fit took 59 s with two
    workers). ``0`` means automatic: all cores with one worker; with several workers, as many threads as
    cores the task holds of the scheduler's ``cores`` resource (see :func:`scheduler_cores`), else one.
    """

    threads_per_task = luigi.IntParameter(default=0)


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
    wanted = task.task_cores() if forked or parallelism().threads_per_task else usable_cpus()
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
        where = exc.filename or project_path(paths().work_dir)
        return (
            f"cannot write {where}: {_WRITE_ERRNOS[exc.errno]} ({exc.strerror}). Free space or fix the "
            f"permissions of {project_path(paths().work_dir)} / {project_path(paths().registry_dir)} and run "
            "again: outputs written before are intact and will not be redone."
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
