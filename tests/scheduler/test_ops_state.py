"""Issue 15.4: `make clean` keeps operational state (luigid's state, history, pid file, logs; cron logs);
`make clean-ops` removes it, and refuses while luigid is running."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# real luigid / cron / browser / S3-server processes: part of `make test-slow` (CI runs it), not `make test`
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

OPS = [
    "var/scheduler/history.db",
    "var/scheduler/luigid.pid",
    "var/scheduler/luigid.addr",
    "var/scheduler/state.pickle",
    "var/scheduler/log/luigid.out",
    "var/log/pipeline-20240105-060000-monthly.log",
]
OUTPUTS = ["var/work/ValidatedTrips/x/summary.json", "models/green-trip-duration/production.json"]


def make(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_make_clean_removes_outputs_and_keeps_operational_state(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in OPS + OUTPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    result = make("clean", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [n for n in OPS if not (tmp_path / n).exists()] == []
    assert [n for n in OUTPUTS if (tmp_path / n).exists()] == []


def test_make_help_says_what_clean_keeps():
    text = make("help", cwd=ROOT).stdout
    clean = next(line for line in text.splitlines() if line.split()[0] == "clean")
    assert "keeps" in clean and "history" in clean and "logs" in clean
    assert any(line.split()[0] == "clean-ops" and "refused while luigid runs" in line for line in text.splitlines())


def test_make_clean_ops_refuses_while_luigid_runs_then_removes_state_and_logs(tmp_path):
    from conftest import start_luigid, stop_luigid

    daemon = start_luigid(tmp_path / "sched")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pipeline-x.log").write_text("x")
    args = ("clean-ops", f"SCHEDULER_DIR={daemon.home}", f"PIPELINE_LOG_DIR={logs}")
    try:
        refused = make(*args, cwd=ROOT)
        assert refused.returncode != 0
        assert "luigid is running" in refused.stderr and "make scheduler-stop" in refused.stderr
        assert (daemon.home / "luigid.pid").exists() and (logs / "pipeline-x.log").exists()
        daemon.api("task_list")  # still up and answering
    finally:
        stop_luigid(daemon)
    done = make(*args, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert not daemon.home.exists() and not logs.exists()
