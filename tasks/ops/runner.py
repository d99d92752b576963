"""Running a job: the work-directory lock, the missing-data pre-flight check and the exit code.

Used by ``pipeline.py`` (and so by cron). Luigi's own process lock is keyed on the exact command line and
``luigi.build`` takes none, so two overlapping runs with the local scheduler could run the same task twice:
the lock here belongs to the work directory instead. With the central scheduler, luigid coordinates the
workers and no lock is taken, so several worker processes can share one graph.

Everything an operator can get wrong is decided before luigi starts, within seconds: a month that is not
available (exit 20), a lock held by a live, possibly hung run (exit 10), no luigid at the given address
(exit :data:`SCHEDULER_UNREACHABLE`). Losing luigid during the run ends it with one line and
:data:`SCHEDULER_LOST` instead of an ``RPCError`` traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
import shlex
import socket
import sys
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
#: a run holding the work-directory lock for longer than this is named as possibly hung
HUNG_AFTER_SECONDS = 6 * 3600

# luigi.rpc reads [core] rpc_retry_attempts / rpc_retry_wait / rpc_connect_timeout from the raw config, but
# luigi's `core` Config class does not declare them, so every run would warn that they are "not consumed"
warnings.filterwarnings("ignore", message=r".*parameter 'rpc_\w+' .* not consumed by the task 'core'")


class AlreadyRunningError(RuntimeError):
    """Another run holds the work directory's lock."""


def _lock_record() -> str:
    """What the holder writes into the lock file, so a later run can say who holds it and since when."""
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return f"pid {os.getpid()}\nstarted {started}\nhost {socket.gethostname()}\ncommand {command}\n"


def _read_record(text: str) -> dict[str, str]:
    record = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key and value:
            record[key] = value.strip()
    return record


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _flock_holders(path: Path) -> set[int] | None:
    """Pids the kernel lists as holding a flock on ``path`` (Linux ``/proc/locks``); None if it cannot tell."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in lines:
        fields = line.replace("->", "").split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].lower() == wanted:
            holders.add(int(fields[4]))
    return holders


def _age(started: str, now: dt.datetime) -> float | None:
    try:
        return (now - dt.datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None


def describe_holder(lock_path: Path, now: dt.datetime | None = None) -> str:
    """Who holds ``lock_path``, since when, and whether it looks hung; never names a process that has ended.

    The record in the file is trusted only if its pid is alive and (where the kernel can tell) holds the
    lock: a record left by a killed run (its flock was released by the kernel) is stale.
    """
    now = now or dt.datetime.now().astimezone()
    try:
        record = _read_record(lock_path.read_text())
    except OSError:
        record = {}
    pid = int(record["pid"]) if record.get("pid", "").isdigit() else None
    holders = _flock_holders(lock_path)
    same_host = record.get("host") in (None, socket.gethostname())
    if pid is None or (same_host and not _pid_alive(pid)) or (holders and pid not in holders):
        alive = sorted(h for h in holders or () if _pid_alive(h))
        who = f"pid {', '.join(map(str, alive))}" if alive else "another process"
        return f"{lock_path} is held by {who}, which did not record when it started"
    started = record.get("started", "an unknown time")
    age = _age(started, now)
    text = (
        f"{lock_path} is held by pid {pid} on {record.get('host', '?')} "
        f"({record.get('command', 'unknown command')}), running since {started}"
    )
    if age is not None and age >= HUNG_AFTER_SECONDS:
        return (
            f"{text} ({age / 3600:.1f} h ago): it may be hung. Check it with `ps -o pid,etime,args -p {pid}` "
            f"and its log; if it makes no progress, stop it with `kill {pid}` (the next run resumes where it stopped)"
        )
    ago = f" ({age / 60:.0f} min ago)" if age is not None else ""
    return f"{text}{ago}: a run on this work directory is going on; try again when it has finished"


@contextlib.contextmanager
def work_dir_lock() -> Iterator[Path | None]:
    """Hold an exclusive, non-blocking lock on the work directory for the life of the run.

    The kernel releases it when the process dies, so a killed run never leaves a stale lock. The file
    records the holder's pid, start time, host and command line for :func:`describe_holder`.

    A work directory in object storage takes no lock: a local file would not stop a run on another host. There,
    luigid coordinates (it gives each task to one worker) or the operator runs one command at a time.
    """
    work = work_storage().local_root
    if work is None:
        yield None
        return
    work.mkdir(parents=True, exist_ok=True)
    lock_path = work / ".pipeline.lock"
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunningError(describe_holder(lock_path)) from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(_lock_record())
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
    tasks: list[luigi.Task], kwargs: dict[str, object], address: str | None, outcome: JobOutcome
) -> int:
    codes = luigi.retcodes.retcode()
    _sweep(address is not None)
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
        log.error(
            "lost the central scheduler at %s during the run (%s): tasks that finished are kept; start it "
            "again (`make scheduler`) and rerun, or rerun without --scheduler-host/--scheduler-port",
            address,
            cause,
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
) -> int:
    """Build ``tasks`` and return the process exit code (see ``[retcode]`` in luigi.cfg and the constants above).

    ``outcome`` (optional) receives the tasks that were built and luigi's run result.
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
        with contextlib.nullcontext() if central else work_dir_lock():
            return _preflight_and_build(tasks, kwargs, address, outcome)
    except SchedulerUnreachableError as exc:
        log.error("%s", exc)
        return SCHEDULER_UNREACHABLE
    except AlreadyRunningError as exc:
        log.error("already running: %s", exc)
        return codes.already_running or 1
    except OSError as exc:  # e.g. the work directory cannot be created or written
        log.error("%s", explain_write_error(exc) or f"cannot use the work directory: {exc}")
        return codes.unhandled_exception or 1
