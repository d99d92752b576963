"""Issue 12 §1: every process the project starts spins only briefly in OpenMP before it sleeps.

libgomp prints the settings it read at load time when ``OMP_DISPLAY_ENV=VERBOSE``: ``GOMP_SPINCOUNT = '3000'``
(its default is 300000) proves the process's OpenMP runtime was initialised with the project's bounded spin
count, i.e. the entry point set it before scikit-learn loaded. The variables are removed from each
subprocess's environment first, so what is checked is the project's own setup, not this test process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
BOUNDED_SPIN_RUNTIME = "GOMP_SPINCOUNT = '3000'"
NOT_APPLIED = "could not apply"

#: ``python -m luigi`` plus a SUCCESS handler (registered on luigi.Task, so importing it loads only luigi)
#: that records, in the process that ran the task, its environment and OpenMP thread count
LUIGI_WITH_PROBE = """
import json, os, sys
import luigi
from luigi.cmdline import luigi_run

MAIN_PID = os.getpid()

@luigi.Task.event_handler(luigi.Event.SUCCESS)
def probe(task):
    from threadpoolctl import threadpool_info
    record = {
        "task": task.task_family,
        "forked": os.getpid() != MAIN_PID,
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "openmp_threads": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"],
    }
    with open(os.environ["PROBE_OUT"], "a") as fh:
        fh.write(json.dumps(record) + "\\n")

luigi_run(sys.argv[1:])
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NATIVE}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    env.update(extra)
    return env


def test_luigi_module_pipeline_and_its_forked_task_processes_spin_briefly(pipeline_env, tmp_path: Path) -> None:
    probe = tmp_path / "probe.jsonl"
    cmd = [sys.executable, "-c", LUIGI_WITH_PROBE, "--module", "pipeline", "ValidatedTrips", "--month", "2021-01"]
    cmd += ["--workers", "2", "--local-scheduler"]
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,  # not the project folder: luigi finds the module `pipeline` on PYTHONPATH
        env=_env(LUIGI_CONFIG_PATH=str(pipeline_env.cfg_file), PROBE_OUT=str(probe), PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert BOUNDED_SPIN_RUNTIME in proc.stderr, proc.stderr[-3000:]
    assert NOT_APPLIED not in proc.stderr, proc.stderr[-3000:]
    records = [json.loads(line) for line in probe.read_text().splitlines()]
    validated = [r for r in records if r["task"] == "ValidatedTrips"]
    assert validated, records
    for record in validated:
        assert record["forked"], "with --workers 2 the task runs in a forked task process"
        assert record["gomp_spincount"] == "3000"
        # the bare luigi command offers no 'cores' resource and the test config sets threads_per_task = 1
        assert record["openmp_threads"] and all(n == 1 for n in record["openmp_threads"]), record
        assert all(n <= len(os.sched_getaffinity(0)) for n in record["openmp_threads"])


def test_pipeline_py_spins_briefly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "--help"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert BOUNDED_SPIN_RUNTIME in proc.stderr, proc.stderr[-3000:]
    assert NOT_APPLIED not in proc.stderr


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="bin/cron-pipeline needs <project>/.venv")
def test_cron_wrapper_spins_briefly_under_crons_bare_environment(tmp_path: Path) -> None:
    env = ["env", "-i", "PATH=/usr/bin:/bin", "OMP_DISPLAY_ENV=VERBOSE", f"PIPELINE_LOG_DIR={tmp_path}"]
    proc = subprocess.run(
        [*env, str(ROOT / "bin" / "cron-pipeline"), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    log = next(tmp_path.glob("pipeline-*.log")).read_text()
    assert proc.returncode == 0, log[-3000:]
    assert BOUNDED_SPIN_RUNTIME in log and NOT_APPLIED not in log, log[-3000:]


@pytest.mark.slow
def test_a_fit_next_to_busy_processes_slows_down_proportionally(tmp_path: Path) -> None:
    """The measurement of benchmarks/contention.py at a small size: busy / alone with the setup stays small.

    Without the setup (libgomp spinning) the same ratio was 4.2x at this size in one measurement here, and
    56x at 130k rows x 200 iterations on 2 cores (issue 12). Shared machines are noisy: medians of 3
    interleaved repetitions, and a bound well above the 1.0-1.4 measured with the setup.
    """
    out = tmp_path / "contention.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "contention.py"), "--rows", "20000", "--iterations", "50"]
    cmd += ["--reps", "3", "--timeout", "120", "--conditions", "alone_fix", "busy_fix", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert all(r["gomp_spincount"] == "3000" for r in result["runs"]["busy_fix"]), result["runs"]
    assert all(n == 1 for r in result["runs"]["busy_fix"] for n in r["openmp_threads"]), result["runs"]
    assert result["ratios"]["busy_fix/alone_fix"] <= 2.0, result["median_seconds"]
