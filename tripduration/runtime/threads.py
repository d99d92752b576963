"""Process setup for native threads: short bounded spinning in OpenMP, and no more threads than free CPUs.

Why. scikit-learn's HistGradientBoosting runs many short OpenMP parallel regions; its OpenMP runtime
(libgomp, vendored in the scikit-learn wheel) makes a waiting thread spin at each barrier for
``GOMP_SPINCOUNT`` iterations (300,000 by default, a few milliseconds) before it sleeps. When another process
holds one of the cores, the thread that shares that core gets a time slice only now and then, and its
partners spin through their whole slices waiting for it at every barrier: on 2 cores a 130k x 12 fit took
3.6 s alone and 203.7 s next to one busy process (issue 12).

Two measures, both measured here on 2 cores (same fit, 2 threads; seconds, medians of 3-6 runs):

    libgomp spin count               idle fit   fit next to one busy process   idle full run
    300,000 (libgomp's default)      0.90 s     5.4-19 s (unbounded)           33 s
    3,000 (SPIN_WAIT, ours)          0.97 s     4.4-5.0 s                      36 s
    1,000                            1.21 s     3.0 s                          39 s
    0 (OMP_WAIT_POLICY=PASSIVE)      5.7 s      1.6 s                          341 s (make run)

1 thread next to the busy process: 1.3 s. So (1) every task starts no more OpenMP threads than there are
CPUs free when it starts (:func:`free_cpus`, applied per task by ``tasks.base``): on a busy machine it runs
one thread and nothing waits at a barrier; and (2) when contention begins in the middle of a multi-threaded
fit, a waiting thread spins only briefly (``GOMP_SPINCOUNT=3000``) and then sleeps, which bounds the damage
at about 4x instead of 50x. Passive waiting (spin count 0) is not the default: every barrier then pays a
sleep and a wake-up, and on this virtual machine that made an idle full run ten times slower.

Why so early. libgomp reads its environment once, in its load-time constructor, i.e. when the first module
that links it (``sklearn``) is imported; changing ``os.environ`` afterwards has no effect on the running
process (only on child processes that start a new interpreter). So :func:`prepare_process` must run before
anything imports scikit-learn: it is the first thing ``pipeline.py`` does (so ``python pipeline.py ...``,
``pipeline.py serve``, ``bin/cron-pipeline`` and ``python -m luigi --module pipeline ...``, where luigi
imports the module ``pipeline`` before any task module; luigi itself loads no numpy or scikit-learn), and
the first thing the benchmark scripts do. If an OpenMP runtime is already loaded when it runs, it logs a
warning: the setting then only reaches child processes.

How children get it. The values go into ``os.environ`` only where the operator said nothing (an explicit
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins), so every process started from there inherits them: luigi's
forked task processes (a fork copies the parent's already-initialised libgomp and its environment), and
subprocesses such as the ones tests and benchmarks start.

Thread counts. OpenMP and OpenBLAS start one thread per CPU of the affinity mask; a container's CPU quota
(cgroup ``cpu.max`` / ``cpu.cfs_quota_us``) is not in that mask. :func:`usable_cpus` is the smaller of the
two, and when the quota is the smaller, :func:`prepare_process` also sets ``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` to it. Per task, ``tasks.base`` then limits OpenMP to the cores the task holds of
the scheduler's ``cores`` resource (threadpoolctl), never more than :func:`free_cpus`.

This module imports only the standard library (and never luigi): importing it loads no native runtime.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

#: what every process of the project runs with unless the operator chose a wait policy or spin count:
#: a waiting OpenMP thread spins 3,000 iterations (tens of microseconds) and then sleeps (see the table above)
SPIN_WAIT: dict[str, str] = {"GOMP_SPINCOUNT": "3000"}
#: variables by which an operator chooses how OpenMP threads wait; if any is set, SPIN_WAIT is not applied
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: shared objects whose presence in /proc/self/maps means an OpenMP runtime has already read its environment
OPENMP_LIBRARIES = ("libgomp", "libiomp", "libomp")
#: modules that load an OpenMP runtime when imported (fallback where /proc/self/maps is not available)
OPENMP_MODULES = ("sklearn",)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


# --------------------------------------------------------------------------- CPUs
def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (``sched_getaffinity``; ``os.cpu_count()`` where unsupported)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2.0; ``"max 100000"`` -> None)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _v1_quota(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return parse_cpu_max(f"{quota.strip()} {period.strip()}") if quota.strip() != "-1" else None


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The folders whose CPU limits apply to this process: its cgroup and every ancestor, v2 and v1 layouts."""
    relative = {"": "/"}  # controller -> path; "" is the v2 unified hierarchy
    for line in (_read(proc_cgroup) or "").splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        for controller in controllers.split(","):
            if controller in ("", "cpu"):
                relative[controller] = path or "/"
    dirs = []
    for controller, path in relative.items():
        base = root / "cpu" if controller == "cpu" else root
        parts = [p for p in path.split("/") if p]
        dirs += [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return dirs


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs the cgroup CPU quota allows this process (the tightest of its cgroup and ancestors), None if none.

    Reads cgroup v2 ``cpu.max`` and cgroup v1 ``cpu/cpu.cfs_quota_us`` / ``cpu.cfs_period_us``. A quota of
    1.5 CPUs lets two threads run, each half the time: rounded up, since a thread can use a fraction.
    """
    limits = []
    for folder in _cgroup_dirs(root, proc_cgroup):
        text = _read(folder / "cpu.max")
        limit = parse_cpu_max(text) if text is not None else _v1_quota(folder)
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def usable_cpus() -> int:
    """CPUs this process can really get: its affinity mask, capped by the cgroup CPU quota (at least 1)."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


# --------------------------------------------------------------------------- process setup
def own_runnable_threads(task_dir: Path = Path("/proc/self/task")) -> int:
    """Threads of this process that are running or ready to run (at least 1: the caller)."""
    running = 0
    for stat in task_dir.glob("*/stat"):
        text = _read(stat)
        # the state is the first field after the command name, which is in parentheses and may hold spaces
        if text and text.rsplit(")", 1)[-1].split()[:1] == ["R"]:
            running += 1
    return max(1, running)


def other_runnable(
    samples: int = 3,
    interval: float = 0.005,
    loadavg: Path = Path("/proc/loadavg"),
    own: Callable[[], int] = own_runnable_threads,
) -> int:
    """Threads of other processes running or ready to run on this machine right now (0 if unknown).

    From the kernel's instant count of runnable threads (4th field of ``/proc/loadavg``, ``R/T``), minus
    this process's own runnable threads (a forked luigi task process has helper threads of its own that
    are runnable when it starts: counting them made every task of a ``--workers 2`` run single-threaded);
    the median of a few samples, so one short-lived process does not count.
    """
    import time

    counts = []
    for i in range(samples):
        text = _read(loadavg)
        try:
            counts.append(int(text.split()[3].split("/")[0]) - own() if text else 0)
        except (IndexError, ValueError):
            return 0
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, sorted(counts)[len(counts) // 2])


def free_cpus() -> int:
    """Usable CPUs that no other process is using right now (at least 1).

    A task starts no more OpenMP threads than this: a thread that has to share its core with a busy process
    makes every barrier of a parallel region wait for it (measured here under load: a HistGradientBoosting fit
    took 2.0-2.5 s on 1 thread, 3.5-4.3 s on 2 passive threads, 7-19 s on 2 spinning threads).
    """
    return max(1, usable_cpus() - other_runnable())


def openmp_already_loaded() -> bool:
    """True if an OpenMP runtime is already mapped into this process (so it has read its environment)."""
    maps = _read(Path("/proc/self/maps"))
    if maps is not None:
        return any(name in maps for name in OPENMP_LIBRARIES)
    return any(name in sys.modules for name in OPENMP_MODULES)


def native_thread_environment() -> dict[str, str]:
    """The variables :func:`prepare_process` sets by default: bounded spinning, and a thread cap under a quota."""
    values = dict(SPIN_WAIT)
    cpus = usable_cpus()
    if cpus < affinity_cpus():  # OpenMP / OpenBLAS would start one thread per CPU of the mask
        values["OMP_NUM_THREADS"] = str(cpus)
        values["OPENBLAS_NUM_THREADS"] = str(cpus)
    return values


def prepare_process(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the native-thread environment of this process and its children; call it before importing sklearn.

    Values already in the environment are kept (an operator's choice wins, and a child started by a
    prepared parent already has them); an explicit ``OMP_WAIT_POLICY`` also keeps the spin count its
    policy implies. Returns the variables it set. If it set some while an OpenMP runtime is already
    loaded, it logs a warning: that runtime keeps its long spins, only children are fixed.
    """
    env = os.environ if environ is None else environ
    operator_chose_waiting = any(key in env for key in WAIT_VARIABLES)
    changed = {}
    for key, value in native_thread_environment().items():
        if key in SPIN_WAIT and operator_chose_waiting:
            continue
        if key not in env:
            env[key] = value
            changed[key] = value
    if changed and environ is None and openmp_already_loaded():
        log.warning(
            "could not apply %s to this process: an OpenMP runtime (libgomp, loaded by scikit-learn) was "
            "already loaded and read its environment, so its threads spin long while waiting (up to a 50x "
            "slowdown when other jobs share the CPUs). Call tripduration.runtime.threads.prepare_process() before "
            "anything imports numpy/scikit-learn, or set GOMP_SPINCOUNT=3000 in the environment that starts Python. "
            "Child processes started from here do get it.",
            " ".join(f"{k}={v}" for k, v in changed.items()),
        )
    return changed
