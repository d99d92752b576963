"""Running a job: the work-directory lock, the missing-data pre-flight check and the exit code.

Used by ``pipeline.py`` (and so by cron). Luigi's own process lock is keyed on the exact command line and
``luigi.build`` takes none, so two overlapping runs with the local scheduler could run the same task twice:
the lock taken here (``tasks.ops.lock``) belongs to the work directory instead. With the central scheduler,
luigid coordinates the workers and no lock is taken, so several worker processes can share one graph.

Everything an operator can get wrong is decided before luigi starts, within seconds: a month that is not
available (exit 20), a lock held by a live, possibly hung run (exit 10), no luigid at the given address
(exit :data:`SCHEDULER_UNREACHABLE`). Losing luigid during the run ends it with one line and
:data:`SCHEDULER_LOST` instead of an ``RPCError`` traceback.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import luigi
import luigi.retcodes
import luigi.rpc
from luigi.execution_summary import LuigiRunResult, LuigiStatusCode
from luigi.task import flatten
from luigi.task_register import Register

from tasks.data import TripData
from tasks.ops.lock import AlreadyRunningError, work_dir_lock
from tasks.ops.process import explain_write_error, usable_cpus
from tasks.settings import DownloadConfig
from tasks.targets import raw_storage, registry_storage, work_storage
from tripduration.data.fetch import probe_all
from tripduration.data.months import format_month
from tripduration.registry.names import is_model_name
from tripduration.registry.store import ModelRegistry

log = logging.getLogger("luigi-interface")

#: exit code: --scheduler-host/--scheduler-port given and nothing listens there; nothing was run
SCHEDULER_UNREACHABLE = 45
#: exit code: luigid stopped answering during the run (killed, restarted); finished tasks are kept
SCHEDULER_LOST = 46

# luigi.rpc reads [core] rpc_retry_attempts / rpc_retry_wait / rpc_connect_timeout from the raw config, but
# luigi's `core` Config class does not declare them, so every run would warn that they are "not consumed"
warnings.filterwarnings("ignore", message=r".*parameter 'rpc_\w+' .* not consumed by the task 'core'")


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
    """Months the graph needs that are neither on disk nor downloadable now, one line each with the reason.

    Decided within about ``[download] probe_timeout_seconds`` whatever the network does: every month not on
    disk is probed at once (one HEAD request, never retried). A 404/403/410, no such file, a DNS failure, a
    refused connection or no answer all mean "not available"; ``[download] offline = true`` probes nothing.
    """
    cfg = DownloadConfig()
    needed = sorted(
        {(t.color, format_month(t.month)) for t in _walk(tasks) if isinstance(t, TripData) and not t.complete()}
    )
    if not needed:
        return []
    if cfg.offline:
        raw = raw_storage().url
        return [f"{color} {month}: not in {raw} and [download] offline = true" for color, month in needed]
    urls = {key: cfg.url_template.format(color=key[0], month=key[1]) for key in needed}
    found = probe_all(urls.values(), timeout=cfg.probe_timeout_seconds)
    return [
        f"{color} {month}: {found[url].reason} ({url})"
        for (color, month), url in urls.items()
        if not found[url].available
    ]


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


def exit_code(result: luigi.execution_summary.LuigiRunResult, roots: Sequence[luigi.Task]) -> int:
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
    """Set ``[resources] cores`` for this run (see ``tasks.ops.process.scheduler_cores``) and return it.

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

        listed = RemoteScheduler(scheduler_url).resource_list()  # type: ignore[attr-defined]  # luigid's RPC
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


class SchedulerUnreachableError(RuntimeError):
    """--scheduler-host/--scheduler-port name an address where no luigid listens."""


def check_scheduler(host: str, port: int, timeout: float = 3.0) -> None:
    """Refuse at once when nothing listens at ``host:port``: luigi's RPC would retry for minutes first."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SchedulerUnreachableError(
            f"no central scheduler at {host}:{port}; start it with `make scheduler` "
            f"(SCHEDULER_PORT={port} for this port), or leave out --scheduler-host/--scheduler-port "
            f"to use the local scheduler ({reason})"
        ) from None


def _build_kwargs(
    workers: int | None, scheduler_host: str | None, scheduler_port: int | None
) -> tuple[dict[str, object], tuple[str, int] | None]:
    """luigi.build's keyword arguments, and the central scheduler's address (None: local scheduler)."""
    central = bool(scheduler_host or scheduler_port)
    kwargs: dict[str, object] = {"detailed_summary": True, "local_scheduler": not central}
    if workers is not None:
        kwargs["workers"] = workers
    if not central:
        return kwargs, None
    host = scheduler_host or "127.0.0.1"
    port = scheduler_port or luigi.interface.core().scheduler_port
    kwargs.update(scheduler_host=host, scheduler_port=port)
    return kwargs, (host, port)


def _local_work_dir() -> Path | None:
    """The work directory to lock: None for one in object storage (a local lock would not stop another host; there
    luigid coordinates, or the operator runs one command at a time)."""
    return work_storage().local_root


def _sweep(central: bool) -> None:
    """Remove files a killed run left half-written; with luigid other workers may be writing right now, so
    only old ones are removed then."""
    swept = work_storage().sweep_orphans(older_than_seconds=3600 if central else 0)
    registry = registry_storage()
    for name in registry.children(""):
        if is_model_name(name):  # every registry write holds the model's lock: sweep under it
            swept += ModelRegistry(registry, name).sweep_orphans()
    for path in swept:
        log.warning("removed %s, left by a run that was killed", path)


def _preflight_and_build(
    tasks: list[luigi.Task], kwargs: dict[str, object], central: tuple[str, int] | None, outcome: JobOutcome
) -> int:
    codes = luigi.retcodes.retcode()
    _sweep(central is not None)
    if not all(task.complete() for task in tasks):
        started = time.monotonic()
        missing = missing_months(tasks)
        if missing:
            log.error(
                "missing input data, nothing was run (checked in %.1f s): %d month(s) not available:\n  %s",
                time.monotonic() - started,
                len(missing),
                "\n  ".join(missing),
            )
            return codes.missing_data or 1
    try:
        tasks, fetched = fetch_inputs_first(tasks, kwargs)
        outcome.tasks = tasks
        if fetched:
            return fetched
        result = luigi.build(tasks, **kwargs)
        outcome.result = result
    except luigi.rpc.RPCError as exc:
        cause = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        host, port = central or ("?", "?")
        log.error(
            "lost the central scheduler at %s:%s during the run (%s): tasks that finished are kept; start it "
            "again with `make scheduler` (SCHEDULER_PORT=%s for this port) and rerun, or rerun without "
            "--scheduler-host/--scheduler-port",
            host,
            port,
            cause,
            port,
        )
        return SCHEDULER_LOST
    return exit_code(result, tasks)


@dataclass
class JobOutcome:
    """What a run leaves for the result block (``tasks.ops.result``): the tasks built and luigi's run result."""

    tasks: list[luigi.Task] = field(default_factory=list)
    result: LuigiRunResult | None = None


def run(
    tasks: list[luigi.Task],
    *,
    workers: int | None = None,
    scheduler_host: str | None = None,
    scheduler_port: int | None = None,
    outcome: JobOutcome | None = None,
    hold_lock: bool = True,
) -> int:
    """Build ``tasks`` and return the process exit code (see ``[retcode]`` in luigi.cfg and the constants above).

    ``outcome`` (optional) receives the tasks that were built and luigi's run result. ``hold_lock=False``: the
    caller holds the work-directory lock already (:func:`locked`, e.g. the daily loop around its months).
    """
    outcome = outcome if outcome is not None else JobOutcome(list(tasks))
    outcome.tasks = list(tasks)
    codes = luigi.retcodes.retcode()
    kwargs, central = _build_kwargs(workers, scheduler_host, scheduler_port)
    address = f"{central[0]}:{central[1]}" if central else None
    try:
        if central:
            check_scheduler(*central)
        offer_cores(f"http://{address}" if central else None)
        with contextlib.nullcontext() if central or not hold_lock else work_dir_lock(_local_work_dir()):
            return _preflight_and_build(tasks, kwargs, central, outcome)
    except SchedulerUnreachableError as exc:
        log.error("%s", exc)
        return SCHEDULER_UNREACHABLE
    except AlreadyRunningError as exc:
        log.error("already running: %s", exc)
        return codes.already_running or 1
    except OSError as exc:  # e.g. the work directory cannot be created or written
        log.error("%s", explain_write_error(exc) or f"cannot use the work directory: {exc}")
        return codes.unhandled_exception or 1


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the work-directory lock for several builds (``run(..., hold_lock=False)`` inside); raises
    AlreadyRunningError (one line naming the holder) when another run holds it."""
    with work_dir_lock(_local_work_dir()):
        yield


def already_running(exc: AlreadyRunningError) -> int:
    """Report another run holding the lock; the exit code for it."""
    log.error("already running: %s", exc)
    return luigi.retcodes.retcode().already_running or 1
