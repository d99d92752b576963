"""Issue 15.3: nothing hangs holding the lock. Numeric options are checked before anything starts (exit 2),
and a run that finds the work directory locked says who holds it, since when, and whether it looks hung."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.ops.lock import AlreadyRunningError, work_dir_lock

ROOT = Path(__file__).resolve().parents[2]


def cli(cfg: Path, *args: str, cwd: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--workers", "0"], "argument --workers: 0 is out of range: give an integer from 1 to 256"),
        (["--workers", "-3"], "argument --workers: -3 is out of range: give an integer from 1 to 256"),
        (["monthly", "--workers", "two"], "argument --workers: 'two' is not an integer"),
        (["--scheduler-port", "0"], "argument --scheduler-port: 0 is out of range: give an integer from 1 to 65535"),
        (["backfill", "--last", "2", "--scheduler-port", "70000"], "argument --scheduler-port: 70000 is out of range"),
        (["serve", "--port", "70000"], "argument --port: 70000 is out of range: give an integer from 0 to 65535"),
    ],
)
def test_bad_numeric_options_exit_2_at_once_naming_option_value_and_range(pipeline_env, tmp_path, args, line):
    result = cli(pipeline_env.cfg_file, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [x for x in result.stderr.splitlines() if "error:" in x]
    assert len(errors) == 1 and line in errors[0], result.stderr
    assert not pipeline_env.work_dir.exists(), "no lock, no output"


def test_zero_workers_in_luigi_cfg_is_refused_instead_of_hanging(pipeline_env, tmp_path):
    cfg = tmp_path / "zero.cfg"
    cfg.write_text(pipeline_env.cfg_file.read_text() + "[core]\nworkers = 0\n")
    result = cli(cfg, "--train-months", "2021-01", cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "[core] workers = 0 in luigi.cfg: give an integer from 1 to 256" in result.stderr
    assert not pipeline_env.work_dir.exists()


# --------------------------------------------------------------------------- the lock and its holder
def hold_lock(work_dir: Path, record: str | None) -> contextlib.ExitStack:
    """Hold the work directory's lock from this process (a second taking conflicts like another process), with
    ``record`` as its record (None: a holder that wrote none, named by the kernel's lock table alone)."""
    held = contextlib.ExitStack()
    path = held.enter_context(work_dir_lock(work_dir))
    assert path is not None
    if record is None:
        path.unlink()
    else:
        path.write_text(record)
    return held


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def record(pid: int, started: dt.datetime, command: str = "pipeline.py monthly --month last") -> str:
    return (
        f"pid {pid}\nstarted {started.isoformat(timespec='seconds')}\nhost {socket.gethostname()}\ncommand {command}\n"
    )


def test_the_lock_records_pid_start_host_and_command(pipeline_env):
    with work_dir_lock(pipeline_env.work_dir) as path:
        assert path is not None
        text = path.read_text()
    assert f"pid {os.getpid()}\n" in text
    assert f"host {socket.gethostname()}\n" in text and "started 20" in text and "command " in text
    assert not path.exists(), "a finished run leaves no record"


def test_a_live_holder_is_named_with_its_start_time(pipeline_env, tmp_path):
    started = dt.datetime.now().astimezone() - dt.timedelta(minutes=12)
    held = hold_lock(pipeline_env.work_dir, record(os.getpid(), started))
    try:
        result = cli(pipeline_env.cfg_file, "monthly", "--month", "2021-03", cwd=tmp_path)
    finally:
        held.close()
    assert result.returncode == 10, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if "already running" in x)
    assert f"held by pid {os.getpid()}" in line
    assert started.isoformat(timespec="seconds") in line and "(12 min ago)" in line
    assert "pipeline.py monthly --month last" in line and "may be hung" not in line


def test_a_holder_running_for_hours_is_named_as_possibly_hung(pipeline_env):
    started = dt.datetime.now().astimezone() - dt.timedelta(hours=7)
    held = hold_lock(pipeline_env.work_dir, record(os.getpid(), started))
    try:
        with pytest.raises(AlreadyRunningError) as info, work_dir_lock(pipeline_env.work_dir):
            pass
    finally:
        held.close()
    message = str(info.value)
    assert f"held by pid {os.getpid()}" in message and "(7.0 h ago): it may be hung" in message
    assert f"ps -o pid,etime,args -p {os.getpid()}" in message and f"kill {os.getpid()}" in message


def test_a_stale_record_never_names_a_dead_process_as_the_holder(pipeline_env):
    gone = dead_pid()
    # the lock is held (by this process) while the file still describes a run that has ended
    held = hold_lock(pipeline_env.work_dir, record(gone, dt.datetime.now().astimezone()))
    try:
        with pytest.raises(AlreadyRunningError) as info, work_dir_lock(pipeline_env.work_dir):
            pass
    finally:
        held.close()
    message = str(info.value)
    assert f"pid {gone}" not in message
    assert f"held by pid {os.getpid()}" in message  # the kernel's /proc/locks names the real holder


def test_a_lock_file_left_by_a_dead_run_is_no_obstacle(pipeline_env):
    pipeline_env.work_dir.mkdir(parents=True)
    (pipeline_env.work_dir / ".pipeline.lock").write_text(record(dead_pid(), dt.datetime(2020, 1, 1)))
    with work_dir_lock(pipeline_env.work_dir) as path:
        assert path is not None
        assert path.read_text().startswith(f"pid {os.getpid()}\n")
