"""Running a job: the work-directory lock, the missing-data pre-flight check and the exit code.

Used by ``pipeline.py`` (and so by cron). Luigi's own process lock is keyed on the exact command line and
``luigi.build`` takes none, so two overlapping runs with the local scheduler could run the same task twice:
the lock here belongs to the work directory instead. With the central scheduler, luigid coordinates the
workers and no lock is taken, so several worker processes can share one graph.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import luigi
import luigi.retcodes
from luigi.execution_summary import LuigiStatusCode
from luigi.task import flatten
from luigi.task_register import Register

from tasks.base import download, explain_write_error, paths, project_path, sweep_orphans, usable_cpus
from tasks.data import TripData
from tripduration.fetch import probe
from tripduration.months import format_month
from tripduration.registry import ModelRegistry

log = logging.getLogger("luigi-interface")


class AlreadyRunningError(RuntimeError):
    """Another run holds the work directory's lock."""


@contextlib.contextmanager
def work_dir_lock() -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on the work directory for the life of the run.

    The kernel releases it when the process dies, so a killed run never leaves a stale lock.
    """
    work = project_path(paths().work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lock_path = work / ".pipeline.lock"
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = Path(lock_path).read_text().strip() or "another process"
                raise AlreadyRunningError(
                    f"{lock_path} is held by {holder}: a run on this work directory is going on"
                ) from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield lock_path
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _walk(tasks: Iterable[luigi.Task]) -> Iterator[luigi.Task]:
    seen: set[str] = set()
    stack = list(tasks)
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        yield task
        if isinstance(task, TripData) or task.complete():
            continue
        stack.extend(flatten(task.requires()))


def missing_months(tasks: Iterable[luigi.Task]) -> list[str]:
    """Months the graph needs whose file is neither in the raw directory nor published at the URL.

    Only a definite "not there" (404/403, or no such file) counts; a network error is left to the task,
    which retries it.
    """
    missing = []
    template = download().url_template
    for task in _walk(tasks):
        if isinstance(task, TripData) and not task.complete():
            url = template.format(color=task.color, month=format_month(task.month))
            if probe(url) is False:
                missing.append(f"{task.color} {format_month(task.month)} ({url})")
    return sorted(missing)


def fetch_inputs_first(tasks: list[luigi.Task], kwargs: dict[str, object]) -> tuple[list[luigi.Task], int | None]:
    """Download the months the job needs before its graph is built; return the job's tasks built anew.

    Every task's output path holds the sha256 of the input files it reads (``tasks.base.SourceFile``), and a
    file's content is known only once it is here. So missing files are fetched first (their own luigi run:
    retries, progress in the web view), then the task instances are recreated, so that their fingerprints are
    computed from the files' real content. Returns the exit code of the download run if it did not complete.
    """
    pending = [t for t in _walk(tasks) if isinstance(t, TripData) and not t.complete()]
    if not pending:
        return tasks, None
    log.info("downloading %d missing month(s) before building the job's graph", len(pending))
    result = luigi.build(pending, **kwargs)
    code = exit_code(result, pending)
    if code:
        return tasks, code
    Register.clear_instance_cache()  # the cached instances computed their fingerprints without the files
    return [type(t)(**t.param_kwargs) for t in tasks], 0


def exit_code(result: luigi.execution_summary.LuigiRunResult, roots: list[luigi.Task]) -> int:
    """Map a run to luigi's ``[retcode]`` codes; 0 whenever the requested tasks are complete.

    With several workers on one central scheduler, a worker reports the tasks that others ran as "not
    granted run permission"; that is not a failure when the job is done, so completeness decides first.
    """
    codes = luigi.retcodes.retcode()
    if all(task.complete() for task in roots):
        return 0
    return {
        LuigiStatusCode.FAILED: codes.task_failed,
        LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED: max(codes.task_failed, codes.scheduling_error),
        LuigiStatusCode.SCHEDULING_FAILED: codes.scheduling_error,
        LuigiStatusCode.MISSING_EXT: codes.missing_data,
    }.get(result.status, codes.not_run) or 1


def offer_cores(scheduler_url: str | None) -> int:
    """Set ``[resources] cores`` for this run (see ``tasks.base.scheduler_cores``) and return it.

    Local scheduler: luigi.cfg's value if it has one, else the CPUs this process may use. luigid: the total
    it reports for ``cores`` (its own luigi.cfg; ``bin/scheduler`` writes one); if it has none, the option
    is removed, so tasks ask for no resource luigid would never grant.
    """
    config = luigi.configuration.get_config()
    if scheduler_url is None:
        if not config.has_option("resources", "cores"):
            config.set("resources", "cores", str(usable_cpus()))
        return config.getint("resources", "cores")
    total = 0
    try:
        from luigi.rpc import RemoteScheduler

        listed = RemoteScheduler(scheduler_url).resource_list()
        total = next((int(r["num_total"]) for r in listed if r.get("name") == "cores"), 0)
    except Exception as exc:  # luigi.build reports an unreachable scheduler itself
        log.debug("could not list luigid's resources: %s", exc)
    if total:
        config.set("resources", "cores", str(total))
    else:
        if config.has_section("resources"):
            config.remove_option("resources", "cores")
        log.info("luigid defines no 'cores' resource: with --workers > 1 each task runs single-threaded")
    return total


def run(
    tasks: list[luigi.Task],
    *,
    workers: int | None = None,
    scheduler_host: str | None = None,
    scheduler_port: int | None = None,
) -> int:
    """Build ``tasks`` and return the process exit code (see ``[retcode]`` in luigi.cfg)."""
    codes = luigi.retcodes.retcode()
    central = bool(scheduler_host or scheduler_port)
    kwargs: dict[str, object] = {"detailed_summary": True, "local_scheduler": not central}
    if workers is not None:
        kwargs["workers"] = workers
    if central:
        kwargs["scheduler_host"] = scheduler_host or "127.0.0.1"
        if scheduler_port:
            kwargs["scheduler_port"] = scheduler_port
    port = kwargs.get("scheduler_port") or luigi.interface.core().scheduler_port
    url = f"http://{kwargs['scheduler_host']}:{port}" if central else None
    offer_cores(url)
    lock = contextlib.nullcontext() if central else work_dir_lock()
    try:
        with lock:
            # files a killed run left half-written; with luigid other workers may be writing right now, so
            # only old ones are removed then
            swept = sweep_orphans([project_path(paths().work_dir)], older_than_seconds=3600 if central else 0)
            registry_root = project_path(paths().registry_dir)
            for home in sorted(registry_root.iterdir()) if registry_root.is_dir() else []:
                if home.is_dir():  # every registry write holds the model's lock: sweep under it
                    swept += ModelRegistry(registry_root, home.name).sweep_orphans()
            for path in swept:
                log.warning("removed %s, left by a run that was killed", path)
            if not all(task.complete() for task in tasks):
                missing = missing_months(tasks)
                if missing:
                    log.error("missing input data, nothing was run: %s", "; ".join(missing))
                    return codes.missing_data or 1
            tasks, fetched = fetch_inputs_first(tasks, kwargs)
            if fetched is not None and fetched != 0:
                return fetched
            result = luigi.build(tasks, **kwargs)
            return exit_code(result, tasks)
    except AlreadyRunningError as exc:
        log.error("already running: %s", exc)
        return codes.already_running or 1
    except OSError as exc:  # e.g. the work directory cannot be created or written
        log.error("%s", explain_write_error(exc) or f"cannot use the work directory: {exc}")
        return codes.unhandled_exception or 1
