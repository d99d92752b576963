"""tripduration.runtime.threads: CPU quota, usable CPUs, and the passive OpenMP wait set before scikit-learn loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tripduration.runtime import threads

ROOT = Path(__file__).resolve().parents[2]
#: the variables under test are removed from the subprocesses' environment (pytest's own process has them)
NATIVE = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("50000", 0.5), ("", None)],
)
def test_parse_cpu_max(text: str, cpus: float | None) -> None:
    assert threads.parse_cpu_max(text) == cpus


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_is_the_tightest_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    _write(proc, "0::/jobs/pipeline\n")
    _write(root / "jobs" / "pipeline" / "cpu.max", "max 100000\n")
    _write(root / "jobs" / "cpu.max", "150000 100000\n")
    _write(root / "cpu.max", "400000 100000\n")
    assert threads.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    _write(proc, "4:memory:/x\n3:cpu,cpuacct:/box\n0::/\n")
    _write(root / "cpu" / "box" / "cpu.cfs_quota_us", "100000\n")
    _write(root / "cpu" / "box" / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert threads.cgroup_cpu_limit(root, proc) == 1.0


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert threads.cgroup_cpu_limit(tmp_path / "none", tmp_path / "missing") is None


def test_usable_cpus_is_the_affinity_capped_by_the_quota_rounded_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.5)
    assert threads.usable_cpus() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.2)
    assert threads.usable_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.usable_cpus() == 8


def test_thread_caps_are_set_only_under_a_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.0)
    assert threads.native_thread_environment() == {
        "GOMP_SPINCOUNT": "3000",
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    }
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.native_thread_environment() == {"GOMP_SPINCOUNT": "3000"}


def test_prepare_process_sets_defaults_and_keeps_what_the_operator_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    env: dict[str, str] = {}
    assert threads.prepare_process(env) == {"GOMP_SPINCOUNT": "3000"}
    assert env == {"GOMP_SPINCOUNT": "3000"}
    for explicit in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "100"}):
        chosen = dict(explicit)
        assert threads.prepare_process(chosen) == {}  # the operator's wait policy or spin count wins
        assert chosen == explicit


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in NATIVE}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"  # libgomp prints the settings it read when it loads
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )


def test_called_before_sklearn_the_openmp_runtime_spins_briefly() -> None:
    proc = _python(
        "from tripduration.runtime.threads import prepare_process; prepare_process(); import sklearn.ensemble"
    )
    assert "GOMP_SPINCOUNT = '3000'" in proc.stderr, proc.stderr
    assert "could not apply" not in proc.stderr


def test_called_after_sklearn_it_warns_that_the_runtime_spins_long() -> None:
    proc = _python(
        "import sklearn.ensemble; from tripduration.runtime.threads import prepare_process; prepare_process()"
    )
    assert "GOMP_SPINCOUNT = '300000'" in proc.stderr, proc.stderr  # libgomp's own default
    assert "could not apply GOMP_SPINCOUNT=3000 to this process" in proc.stderr


def test_other_runnable_reads_the_instant_count_of_runnable_tasks(tmp_path):
    from tripduration.runtime.threads import other_runnable

    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 3/120 4242\n")  # 3 runnable, one of them the reader
    assert other_runnable(samples=1, loadavg=loadavg, own=lambda: 1) == 2
    loadavg.write_text("0.50 0.40 0.30 1/120 4242\n")
    assert other_runnable(samples=1, loadavg=loadavg, own=lambda: 1) == 0
    loadavg.write_text("garbage")
    assert other_runnable(samples=1, loadavg=loadavg, own=lambda: 1) == 0  # unknown: assume idle
    # the caller's own runnable threads are not "other" load (a forked luigi task starts with helper threads)
    loadavg.write_text("0.50 0.40 0.30 3/120 4242\n")
    assert other_runnable(samples=1, loadavg=loadavg, own=lambda: 3) == 0


def test_own_runnable_threads_counts_threads_in_state_r(tmp_path):
    from tripduration.runtime.threads import own_runnable_threads

    states = {"1": "R", "2": "S", "3": "R", "4": "D"}
    for tid, state in states.items():
        (tmp_path / tid).mkdir()
        # a command name may hold spaces and parentheses: the state is the field after the last ')'
        (tmp_path / tid / "stat").write_text(f"{tid} (python (x) y) {state} 1 2 3\n")
    assert own_runnable_threads(tmp_path) == 2
    assert own_runnable_threads(tmp_path / "missing") == 1  # unreadable: the caller itself
