"""The cron entry under cron's bare environment, from another directory; monthly backfill."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

# real luigid / cron / browser / S3-server processes: part of `make test-slow` (CI runs it), not `make test`
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CRON = str(ROOT / "bin" / "cron-pipeline")


def cron(env_cfg: Path, log_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run like cron does: `env -i PATH=/usr/bin:/bin` (plus the test's config file and log folder)."""
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"LUIGI_CONFIG_PATH={env_cfg}", f"PIPELINE_LOG_DIR={log_dir}"]
    return subprocess.run([*env, CRON, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cron_monthly_succeeds_from_another_directory_and_logs(pipeline_env, tmp_path):
    logs = tmp_path / "logs"
    result = cron(pipeline_env.cfg_file, logs, "monthly", "--month", "2021-03", cwd=Path("/"))
    files = sorted(logs.glob("pipeline-*-monthly.log"))
    assert result.returncode == 0, files and files[-1].read_text()[-3000:]
    assert len(files) == 1
    text = files[0].read_text()
    assert "start: pipeline.py monthly --month 2021-03" in text and "end: exit code 0" in text
    assert "MonthlyTraining(month=2021-03, color=green)" in text
    production = json.loads((pipeline_env.registry_dir / "green-trip-duration" / "production.json").read_text())
    assert production["version"] == "v0001"


def test_cron_exits_with_missing_data_code_when_the_month_is_not_published(pipeline_env, tmp_path):
    result = cron(pipeline_env.cfg_file, tmp_path / "logs", "monthly", "--month", "2021-07", cwd=tmp_path)
    assert result.returncode == 20
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert "missing input data" in log and "green 2021-07" in log


def test_cron_exits_with_already_running_code_while_another_run_holds_the_lock(pipeline_env, tmp_path):
    pipeline_env.work_dir.mkdir(parents=True)
    held = os.open(pipeline_env.work_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running pipeline.py does (tasks/ops/lock.py)
        result = cron(pipeline_env.cfg_file, tmp_path / "logs", "monthly", "--month", "2021-03", cwd=tmp_path)
    finally:
        os.close(held)
    assert result.returncode == 10
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    # the holder (this test process) did not write a record: the kernel's lock table names it anyway
    assert "already running" in log and f"held by pid {os.getpid()}" in log
    assert not (pipeline_env.work_dir / "CandidateScore").exists()


@pytest.mark.slow
def test_second_overlapping_run_exits_already_running_and_first_finishes(pipeline_env, tmp_path):
    env = [
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"LUIGI_CONFIG_PATH={pipeline_env.cfg_file}",
        f"PIPELINE_LOG_DIR={tmp_path / 'logs'}",
    ]
    first = subprocess.Popen([*env, CRON, "monthly", "--month", "2021-03"], cwd=tmp_path)
    lock = pipeline_env.work_dir / ".pipeline.lock"
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().startswith("pid")):
        time.sleep(0.05)
    # same job, arguments in another order: luigi's own command-line lock would not catch this one
    second = subprocess.run(
        [*env, CRON, "monthly", "--color", "green", "--month", "2021-03"], cwd=tmp_path, timeout=120
    )
    assert second.returncode == 10
    assert first.wait(timeout=300) == 0


@pytest.mark.slow
def test_backfill_runs_the_monthly_job_for_every_month_of_the_span(pipeline_env, tmp_path):
    result = cron(
        pipeline_env.cfg_file, tmp_path / "logs", "backfill", "--start", "2021-03", "--stop", "2021-04", cwd=tmp_path
    )
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert result.returncode == 0, log[-3000:]
    registrations = [
        json.loads(p.read_text()) for p in pipeline_env.work_dir.glob("RegisteredModel/*/registration.json")
    ]
    assert len(registrations) == 2
    metas = [
        json.loads(p.read_text())
        for p in (pipeline_env.registry_dir / "green-trip-duration" / "versions").glob("*/metadata.json")
    ]
    splits = sorted(tuple(d["month"] for d in m["data"]) for m in metas)
    assert splits == [("2021-01", "2021-02", "2021-03"), ("2021-02", "2021-03", "2021-04")]
    # already complete: the same backfill runs nothing
    again = cron(
        pipeline_env.cfg_file, tmp_path / "logs2", "backfill", "--start", "2021-03", "--stop", "2021-04", cwd=tmp_path
    )
    assert again.returncode == 0
    assert "Did not run any tasks" in next((tmp_path / "logs2").glob("*.log")).read_text()


def test_cron_backfill_last_n_asks_for_the_months_that_ended_before_today(pipeline_env, tmp_path):
    """The documented daily line: no `date -d` in the crontab; the months are computed by pipeline.py."""
    from pipeline import last_months
    from tripduration.data.months import format_month, month_range

    result = cron(pipeline_env.cfg_file, tmp_path / "logs", "backfill", "--last", "2", cwd=tmp_path)
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    first, last = last_months(2, dt.date.today())
    # those months are on no disk and not at the test's file:// source: listed, exit 20, nothing run
    assert result.returncode == 20, log[-3000:]
    expected = {format_month(m) for m in month_range(first, last)}
    assert expected <= {line.split(":")[0].split()[-1] for line in log.splitlines() if line.startswith("  green ")}
    assert format_month(dt.date.today()) not in {line.split(":")[0].split()[-1] for line in log.splitlines()
                                                  if line.startswith("  green ")}  # fmt: skip


def test_the_daily_cron_line_waits_for_a_late_month_then_monitors_it(pipeline_env, tmp_path):
    """The documented crontab: one daily line. A month not published yet is not a failure (exit 0, one line);
    once its file appears, the next day's run monitors it; the Prometheus text file says so each time."""
    cfg = pipeline_env.cfg_file
    cfg.write_text(cfg.read_text().replace("[download]\n", "[download]\noffline = true\n"))
    april = pipeline_env.raw_dir / "green_tripdata_2021-04.parquet"
    aside = tmp_path / "april.parquet"
    april.rename(aside)  # not published yet
    logs = tmp_path / "logs"
    assert cron(cfg, logs, "train", cwd=Path("/")).returncode == 0

    waiting = cron(cfg, logs, "daily", "--now", "2021-05-10T08:00", cwd=Path("/"))
    log = sorted(logs.glob("*-daily.log"))[-1].read_text()
    assert waiting.returncode == 0, log[-3000:]
    assert "2021-04: not published yet, checked 2021-05-10 08:00" in log and "end: exit code 0" in log
    metrics = (tmp_path / "metrics" / "tripduration.prom").read_text()
    assert 'tripduration_month_lateness_days{month="2021-04",state="awaited"} 9.0' in metrics

    aside.rename(april)  # published on the 18th
    monitored = cron(cfg, logs, "daily", "--now", "2021-05-19T08:00", cwd=Path("/"))
    log = sorted(logs.glob("*-daily.log"))[-1].read_text()
    assert monitored.returncode == 0, log[-3000:]
    assert "ran: 2021-04" in log
    metrics = (tmp_path / "metrics" / "tripduration.prom").read_text()
    assert "tripduration_months_awaited 0.0" in metrics and 'command="daily"' in metrics
    assert "tripduration_last_monitored_month_age_days 18.0" in metrics
