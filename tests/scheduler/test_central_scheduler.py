"""The pipeline against a real luigid: progress, history, several workers, retries (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import luigi
import pytest

# real luigid / cron / browser / S3-server processes: part of `make test-slow` (CI runs it), not `make test`
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def pipeline(env_cfg: Path, *args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(env_cfg)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "pipeline.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_pipeline_reports_to_luigid_with_progress_and_history(pipeline_env, luigid, tmp_path):
    code, out = finish(pipeline(pipeline_env.cfg_file, "--scheduler-port", str(luigid.port), cwd=tmp_path))
    assert code == 0, out[-3000:]

    tasks = luigid.api("task_list", status="DONE")
    families = {t["name"] for t in tasks.values()}
    assert families == {
        "ZoneLookup",
        "TripData",
        "ValidatedTrips",
        "ModelInputTable",
        "CandidateScore",
        "ModelSelection",
        "FinalModel",
        "EvaluationReport",
        "RegisteredModel",
        "TrainingPipeline",
    }
    assert len(tasks) == 19  # with the 3 test candidates
    assert not luigid.api("task_list", status="FAILED")
    messages = {t["display_name"]: t["status_message"] for t in tasks.values()}
    for family in (
        "ValidatedTrips",
        "ModelInputTable",
        "CandidateScore",
        "ModelSelection",
        "FinalModel",
        "EvaluationReport",
        "RegisteredModel",
    ):
        assert all(m for name, m in messages.items() if name.startswith(family)), family
    assert any("kept" in (m or "") for m in messages.values())
    assert all(t["progress_percentage"] == 100 for t in tasks.values() if t["name"] == "CandidateScore")
    found = luigid.api("task_search", task_str="CandidateScore")
    assert len(found["DONE"]) == 3

    # the history database has one run (RUNNING then DONE) per task that ran: 15 (the 4 inputs were there)
    runs = luigid.history(
        "select t.name, count(*) from tasks t join task_events e on e.task_id = t.id "
        "where e.event_name = 'RUNNING' group by t.id"
    )
    assert len(runs) == 15 and all(count == 1 for _, count in runs)
    done = luigid.history("select count(*) from task_events where event_name = 'DONE'")[0][0]
    assert done >= 15


@pytest.mark.slow
def test_two_worker_processes_share_one_graph_and_no_task_runs_twice(pipeline_env, luigid, tmp_path):
    args = ("--scheduler-port", str(luigid.port))
    first = pipeline(pipeline_env.cfg_file, *args, cwd=tmp_path)
    second = pipeline(pipeline_env.cfg_file, *args, "--workers", "2", cwd=tmp_path)
    (code1, out1), (code2, out2) = finish(first), finish(second)
    assert (code1, code2) == (0, 0), (out1[-2000:], out2[-2000:])
    done_lines = [line for out in (out1, out2) for line in out.splitlines() if ") done " in line]
    assert len(done_lines) == 15, "every task ran exactly once across the two processes"
    runs = luigid.history(
        "select t.name, t.id, count(*) from tasks t join task_events e on e.task_id = t.id "
        "where e.event_name = 'RUNNING' group by t.id"
    )
    per_task: dict[str, int] = {}
    for name, task_id, count in runs:
        params = luigid.history(f"select name, value from task_parameters where task_id = {task_id}")
        per_task[f"{name}{sorted(params)}"] = per_task.get(f"{name}{sorted(params)}", 0) + count
    assert len(per_task) == 15
    assert set(per_task.values()) == {1}, {k: v for k, v in per_task.items() if v != 1}
    versions = list((pipeline_env.registry_dir / "green-trip-duration" / "versions").iterdir())
    assert len(versions) == 1


class FlakyTask(luigi.Task):
    """Fails ``failures`` times, then writes its output; counts attempts in a file."""

    path = luigi.Parameter()
    failures = luigi.IntParameter(default=2)

    def output(self):
        return luigi.LocalTarget(self.path)

    def run(self):
        attempts = Path(self.path + ".attempts")
        n = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(n))
        if n <= self.failures:
            raise ConnectionResetError(f"simulated transient failure {n}")
        with self.output().open("w") as fh:
            fh.write("ok")


def attempts(path: Path) -> int:
    return int(Path(str(path) + ".attempts").read_text())


def test_transient_failure_is_retried_within_one_run_with_the_local_scheduler(
    pipeline_env, run_tasks, config, tmp_path
):
    config.set("scheduler", "retry_count", "3")
    config.set("scheduler", "retry_delay", "0.2")
    target = tmp_path / "flaky.txt"
    result = run_tasks([FlakyTask(path=str(target), failures=2)])
    assert result.ok and result.status == "SUCCESS_WITH_RETRY"
    assert attempts(target) == 3 and target.read_text() == "ok"


def test_task_that_keeps_failing_stops_after_retry_count_and_exit_code_names_it(pipeline_env, config, tmp_path, caplog):
    from tasks.ops.runner import run

    config.set("scheduler", "retry_count", "3")
    config.set("scheduler", "retry_delay", "0.2")
    target = tmp_path / "broken.txt"
    with caplog.at_level("INFO", logger="luigi-interface"):
        code = run([FlakyTask(path=str(target), failures=99)])
    assert code == 30
    assert attempts(target) == 3
    summary = caplog.text.split("Execution Summary")[1]
    assert "failed" in summary and "FlakyTask(path=" in summary


def test_transient_failure_is_retried_within_one_run_with_luigid(pipeline_env, luigid, tmp_path):
    target = tmp_path / "flaky-central.txt"
    result = luigi.build(
        [FlakyTask(path=str(target), failures=2)],
        scheduler_port=luigid.port,
        workers=1,
        detailed_summary=True,
        log_level="WARNING",
    )
    assert result.status.name == "SUCCESS_WITH_RETRY", result.summary_text
    assert attempts(target) == 3
    failed = luigid.history("select count(*) from task_events where event_name = 'FAILED'")[0][0]
    assert failed == 2


def test_scheduler_script_stops_cleanly_saving_state_and_reports_a_failed_start(tmp_path):
    import socket

    from conftest import start_luigid, stop_luigid

    daemon = start_luigid(tmp_path / "sched")
    env = daemon.process
    again = subprocess.run([str(ROOT / "bin" / "scheduler"), "start"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "already running" in again.stdout
    stop_luigid(daemon)
    assert (daemon.home / "state.pickle").exists(), "luigid saves its state on a clean shutdown"
    assert not (daemon.home / "luigid.pid").exists()
    status = subprocess.run([str(ROOT / "bin" / "scheduler"), "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3

    with socket.socket() as busy:  # the port is taken: start must fail loudly, not exit 0 with a dead daemon
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", daemon.port))
        busy.listen()
        failed = subprocess.run([str(ROOT / "bin" / "scheduler"), "start"], env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "did not start" in failed.stderr


# --------------------------------------------------------------------------- issue 15.4 / 10.6: scheduler mistakes
def test_no_luigid_at_the_given_port_says_so_within_seconds_with_exit_45(pipeline_env, tmp_path):
    from conftest import free_port

    port = free_port()
    started = time.monotonic()
    code, out = finish(pipeline(pipeline_env.cfg_file, "--scheduler-port", str(port), cwd=tmp_path), timeout=60)
    elapsed = time.monotonic() - started
    assert code == 45, out[-3000:]
    assert f"no central scheduler at 127.0.0.1:{port}; start it with `make scheduler`" in out
    assert "Traceback" not in out and "RPCError" not in out
    assert elapsed < 20, f"{elapsed:.1f} s"
    assert not list(pipeline_env.work_dir.glob("[!.]*/*"))  # (the content-hash cache is not an output)


def test_luigid_killed_mid_run_ends_the_worker_with_one_line_and_exit_46_and_a_rerun_recovers(pipeline_env, tmp_path):
    from conftest import start_luigid, stop_luigid

    daemon = start_luigid(tmp_path / "sched")
    pid = int((daemon.home / "luigid.pid").read_text())
    try:
        proc = pipeline(pipeline_env.cfg_file, "--scheduler-port", str(daemon.port), cwd=tmp_path)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(pipeline_env.work_dir.glob("CandidateScore/*")):
            time.sleep(0.2)  # wait until the run is well under way
        assert proc.poll() is None, "the run ended before luigid could be killed"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        code, out = finish(proc, timeout=120)
        ended_after = time.monotonic() - killed
    finally:
        stop_luigid(daemon)
    assert code == 46, out[-3000:]
    lines = [line for line in out.splitlines() if "lost the central scheduler" in line]
    assert len(lines) == 1 and f"at 127.0.0.1:{daemon.port} during the run" in lines[0], out[-3000:]
    assert f"(SCHEDULER_PORT={daemon.port} for this port)" in lines[0]
    assert "Traceback" not in out.split(lines[0])[1], "nothing after the one line"
    assert "raise RPCError" not in out, out
    assert ended_after < 60, f"the worker needed {ended_after:.0f} s to give up"
    print(f"\nluigid SIGKILL: worker ended {ended_after:.1f} s later with exit {code}: {lines[0]}")
    # the rerun (local scheduler) picks up what was done and completes
    code, out = finish(pipeline(pipeline_env.cfg_file, cwd=tmp_path))
    assert code == 0, out[-3000:]
    assert (pipeline_env.registry_dir / "green-trip-duration" / "versions" / "v0001").is_dir()


def test_scheduler_start_fails_when_another_luigid_holds_the_port_and_status_finds_a_non_default_port(tmp_path):
    from conftest import start_luigid, stop_luigid

    first = start_luigid(tmp_path / "first")
    try:
        env = {**first.process, "SCHEDULER_DIR": str(tmp_path / "second")}  # same port, its own folder
        second = subprocess.run([str(ROOT / "bin" / "scheduler"), "start"], env=env, capture_output=True, text=True)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "did not start" in second.stderr and "Address already in use" in second.stderr
        assert "luigid running" not in second.stdout
        assert not (tmp_path / "second" / "luigid.pid").exists()
        # status without SCHEDULER_PORT: the port comes from the address file written at start
        plain = {k: v for k, v in first.process.items() if k != "SCHEDULER_PORT"}
        status = subprocess.run([str(ROOT / "bin" / "scheduler"), "status"], env=plain, capture_output=True, text=True)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"on http://127.0.0.1:{first.port}" in status.stdout
    finally:
        stop_luigid(first)
    stopped = subprocess.run([str(ROOT / "bin" / "scheduler"), "status"], env=first.process, capture_output=True)
    assert stopped.returncode == 3
