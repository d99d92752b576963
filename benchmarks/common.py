"""Helpers shared by the benchmark scripts: timed subprocesses with time-stamped output lines, luigi override
configs, parsing luigi's worker log into per-task timings, statistics and machine facts.

Only the standard library is imported here, so the orchestrator itself stays light and every measured
process is a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
PYTHON = sys.executable

#: the job the benchmark measures (pipeline.py's defaults)
TRAIN_MONTHS = ("2021-01",)
VAL_MONTH = "2021-02"
TEST_MONTH = "2021-03"
COLOR = "green"


# --------------------------------------------------------------------------- processes
@dataclass
class ProcResult:
    """A finished process: wall time, exit code and its output lines with their arrival times."""

    cmd: list[str]
    seconds: float
    returncode: int
    lines: list[tuple[float, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def run_process(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    log_path: Path | None = None,
    check: bool = True,
    timeout: float | None = None,
    unset: Iterable[str] = (),
) -> ProcResult:
    """Run ``cmd`` to completion; time it from spawn to exit and stamp every output line on arrival.

    stdout and stderr are merged into one pipe (Python's stderr is line-buffered, so luigi's log lines
    arrive as they are written, also from forked worker processes). The stamps are seconds since spawn.
    The process gets its own session, so on timeout it and the children it forked are killed together.
    ``unset``: variables removed from the inherited environment (so the process sets them up itself).
    """
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in set(unset)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    lines: list[tuple[float, str]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    killed = False
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the process started here, by its id
        returncode = proc.wait()
    seconds = time.perf_counter() - start
    thread.join(timeout=30)
    result = ProcResult(list(cmd), seconds, returncode, lines)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(f"{t:9.3f} {line}\n" for t, line in lines))
    if killed:
        raise TimeoutError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s (killed)")
    if check and returncode != 0:
        tail = "\n".join(line for _, line in lines[-40:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {returncode}:\n{tail}")
    return result


#: variables of the native-thread setup (tripduration/runtime/threads.py) a measured process must set up itself
NATIVE_THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[list[int]]:
    """``count`` competing processes, each a pure-Python ``while True: pass`` (one busy core each).

    They stand for the other jobs of a shared machine. Started before the block (and given a moment to get
    going), killed by their own ids after it, even if the block fails.
    """
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", "while True: pass"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        time.sleep(0.3)
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"busy-loop process {proc.pid} exited with {proc.returncode} at once")
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def competing_processes() -> int:
    """One busy process per usable CPU minus one (at least one): the contention the benchmark measures."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus - 1)


def run_json_process(cmd: Sequence[str], **kwargs: Any) -> tuple[dict[str, Any], ProcResult]:
    """Run a benchmark stage process that prints one JSON object as its last line of output."""
    result = run_process(cmd, **kwargs)
    for _, line in reversed(result.lines):
        if line.startswith("{"):
            return json.loads(line), result
    raise RuntimeError(f"{' '.join(cmd)} printed no JSON result:\n{result.text[-3000:]}")


# --------------------------------------------------------------------------- luigi configuration and logs
def write_override_cfg(
    path: Path,
    *,
    work_dir: Path,
    registry_dir: Path,
    raw_dir: Path | None = None,
    candidates: Sequence[str] | None = None,
) -> Path:
    """A LUIGI_CONFIG_PATH override: fresh work and registry folders (everything else from luigi.cfg)."""
    lines = ["[paths]", f"work_dir = {work_dir}", f"registry_dir = {registry_dir}"]
    if raw_dir is not None:
        lines.append(f"raw_dir = {raw_dir}")
    if candidates is not None:
        lines += ["", "[model_search]", f"candidates = {json.dumps(list(candidates))}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


_TASK_LINE = re.compile(r"\) (running|done|failed)\s+(\w+)\((.*)\)\s*$")


def task_timings(lines: Iterable[tuple[float, str]]) -> list[dict[str, Any]]:
    """Per-task start/end (seconds since the process started) from luigi's ``running`` / ``done`` lines."""
    open_: dict[str, float] = {}
    out: list[dict[str, Any]] = []
    for t, line in lines:
        match = _TASK_LINE.search(line)
        if not match:
            continue
        event, family, params = match.groups()
        key = f"{family}({params})"
        if event == "running":
            open_[key] = t
        elif key in open_:
            start = open_.pop(key)
            out.append({"task": key, "family": family, "start": start, "end": t, "seconds": t - start, "status": event})
    return out


def ran_families(timings: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(t["family"] for t in timings if t["status"] == "done")


# --------------------------------------------------------------------------- statistics
def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
        "values": [round(v, 4) for v in vals],
    }


def growth_exponent(n1: float, v1: float | None, n2: float, v2: float | None) -> float | None:
    """``log(v2/v1) / log(n2/n1)``: 1.0 is linear growth, 0 constant, 2 quadratic."""
    if not v1 or not v2 or v1 <= 0 or v2 <= 0 or n1 == n2:
        return None
    return math.log(v2 / v1) / math.log(n2 / n1)


# --------------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# --------------------------------------------------------------------------- machine facts
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("luigi", "pandas", "numpy", "scikit-learn", "scipy", "pyarrow", "joblib", "threadpoolctl"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": versions,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_tracked_changes": bool(status) if status is not None else None,
        "load_average_at_start": load_average(),
    }
