"""Process control of the processes that run tasks: cores, native threads, dying with the worker, write errors.

:func:`prepare_task_process` runs at the start of every task (``tasks.base`` registers it as luigi's START
handler of :class:`~tasks.base.PipelineTask`), in the process that runs the task. The rest serves
``tasks.ops.runner``: the scheduler's ``cores`` resource, a clear message for a full disk, the sweep of
temporary files a killed run left.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import luigi
import luigi.rpc

from tasks.settings import ParallelismConfig
from tasks.targets import registry_storage, work_storage
from tripduration.runtime import threads as native_threads

if TYPE_CHECKING:
    from tasks.base import PipelineTask


def scheduler_cores() -> int:
    """Total of the scheduler's ``cores`` resource for this run, 0 if it has none.

    ``tasks.ops.runner.run`` sets ``[resources] cores`` before building: for the local scheduler the CPUs this
    process may use (unless luigi.cfg sets it), for luigid the total luigid reports (``bin/scheduler``
    gives it one). Tasks then ask for cores (:attr:`PipelineTask.all_cores`), so the scheduler never runs
    more threads than cores. Without the resource (the bare ``luigi`` command, a luigid without it) tasks
    ask for none, and forked tasks use one thread each.
    """
    return luigi.configuration.get_config().getint("resources", "cores", 0)


def usable_cpus() -> int:
    """CPUs this process can really get: the affinity mask, capped by the cgroup CPU quota if there is one.

    ``pipeline.py`` offers this many ``cores`` to the local scheduler; see ``tripduration/runtime/threads.py``.
    """
    return native_threads.usable_cpus()


def prepare_task_process(task: PipelineTask) -> None:
    """Runs at the start of every task, in the process that runs it (a forked child with ``--workers`` > 1)."""
    import multiprocessing

    forked = multiprocessing.current_process().name != "MainProcess"
    if forked:
        _die_with_parent()
    # Normally a no-op: the entry point (pipeline.py) already set passive OpenMP waiting before scikit-learn
    # loaded, and a forked task inherits it. A process that imported the tasks another way gets one warning
    # here, and the processes it starts get the setting.
    native_threads.prepare_process()
    limit_native_threads(task, forked)


def limit_native_threads(task: PipelineTask, forked: bool) -> None:
    """OpenMP threads: the cores the task holds, never more than the CPUs free right now; BLAS: one.

    A process that runs tasks itself (one worker) may use every usable CPU. Either way a task on a shared,
    busy machine starts fewer threads (:func:`tripduration.runtime.threads.free_cpus`): CPU contention then slows it
    in proportion, instead of making its threads wait for each other at every barrier. An operator's
    ``OMP_NUM_THREADS`` is respected as an upper bound.
    """
    from threadpoolctl import threadpool_limits

    # BLAS always single-threaded: multi-threaded reductions change the last digits of linear models'
    # coefficients with the thread count, and the same inputs must give the same metrics with any --workers.
    threadpool_limits(limits=1, user_api="blas")
    wanted = task.task_cores() if forked or ParallelismConfig().threads_per_task else usable_cpus()
    threads = max(1, min(_thread_ceiling(wanted), native_threads.free_cpus()))
    # applies process-wide until changed; every task sets it at its start
    threadpool_limits(limits=threads, user_api="openmp")
    task.__dict__["_openmp_threads"] = task.__dict__["_openmp_threads_at_start"] = threads


def use_idle_cores(task: PipelineTask) -> None:
    """Between two phases of a task: use the cores no other process is using now, up to what the task may use.

    A task holding one core of the scheduler's ``cores`` resource (a candidate, with ``--workers 2``) starts with
    one thread; when the other worker has nothing left to run (the other candidates are done, the next stage
    waits for this one), its next phase (the scoring, a prediction) takes the idle core too instead of leaving
    it unused on the critical path. Never more than ``[parallelism] threads_per_task``, ``OMP_NUM_THREADS`` or
    the usable CPUs; back to what it holds when the machine got busy meanwhile.
    """
    from threadpoolctl import threadpool_limits

    held = task.__dict__.get("_openmp_threads_at_start")  # what the task started with: the cores it holds
    usable = usable_cpus()
    if held is None or held >= usable or ParallelismConfig().threads_per_task:
        return
    threads = max(held, min(_thread_ceiling(usable), native_threads.free_cpus()))
    if threads != task.__dict__.get("_openmp_threads"):
        threadpool_limits(limits=threads, user_api="openmp")
        task.__dict__["_openmp_threads"] = threads


def _thread_ceiling(wanted: int) -> int:
    """``wanted`` threads, capped by the usable CPUs and by an operator's ``OMP_NUM_THREADS``."""
    operator = os.environ.get("OMP_NUM_THREADS", "")
    ceiling = min(wanted, usable_cpus())
    return min(ceiling, int(operator)) if operator.isdigit() and int(operator) > 0 else ceiling


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
        work, registry = work_storage().url, registry_storage().url
        where = exc.filename or work
        return (
            f"cannot write {where}: {_WRITE_ERRNOS[exc.errno]} ({exc.strerror}). Free space or fix the "
            f"permissions of {work} / {registry} and run again: outputs written before are intact and "
            "will not be redone."
        )
    return None
