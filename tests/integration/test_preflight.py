"""Issue 15.2: the pre-flight decides within seconds, before anything runs, which months are not available.

Each case runs ``pipeline.py monthly --month 2021-07`` (it needs 2021-05, 2021-06 and 2021-07, none of which
is on disk) as a real process against a source that is not there: a local server answering 404, a closed
port, a host name that does not resolve, a server that never answers, and ``[download] offline = true`` with
a URL that would hang. Each must exit 20 within seconds, list the three months with the reason, and leave
the work directory without any task output.
"""

from __future__ import annotations

import collections
import configparser
import datetime as dt
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONTHS = ("2021-05", "2021-06", "2021-07")
TEMPLATE_TAIL = "/{color}_tripdata_{month}.parquet"


class NotFound(http.server.BaseHTTPRequestHandler):
    """A source where nothing is published: 404 to HEAD and GET, each request counted."""

    def log_message(self, *_args: object) -> None:
        return None

    def _answer(self) -> None:
        self.server.hits[f"{self.command} {self.path}"] += 1  # type: ignore[attr-defined]
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = _answer  # noqa: N815 - http.server's method names
    do_GET = _answer  # noqa: N815


@pytest.fixture
def not_found_server() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    httpd.daemon_threads = True
    httpd.hits = collections.Counter()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_socket() -> Iterator[socket.socket]:
    """Listens (the kernel completes connections) but never answers: a hung source."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_with(base: Path, dest: Path, **download: str) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(base)
    for key, value in download.items():
        parser.set("download", key, value)
    with open(dest, "w") as fh:
        parser.write(fh)
    return dest


def run_monthly(cfg: Path, cwd: Path, month: str = "2021-07") -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "monthly", "--month", month],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


def assert_not_available(result: subprocess.CompletedProcess, elapsed: float, reason: str, env, limit: float) -> None:
    assert result.returncode == 20, result.stderr[-3000:]
    assert elapsed < limit, f"took {elapsed:.1f} s"
    assert "missing input data, nothing was run" in result.stderr
    assert "3 month(s) not available" in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("green 2021-0")]
    assert [line.split(":")[0] for line in lines] == [f"green {m}" for m in MONTHS], result.stderr[-3000:]
    assert all(reason in line for line in lines), lines
    assert "Traceback" not in result.stderr
    assert not list(env.work_dir.glob("[!.]*/*")), "nothing may run"  # (.cache/ holds caches)
    checked = float(re.search(r"checked in ([0-9.]+) s", result.stderr).group(1))  # type: ignore[union-attr]
    assert checked < 4, f"the pre-flight itself took {checked} s"
    print(f"\npre-flight case {reason!r}: pre-flight {checked:.1f} s, exit 20 after {elapsed:.2f} s (with start-up)")


def test_404_from_the_source_is_not_available(pipeline_env, tmp_path, not_found_server):
    host, port = not_found_server.server_address[:2]
    cfg = config_with(pipeline_env.cfg_file, tmp_path / "c.cfg", url_template=f"http://{host}:{port}{TEMPLATE_TAIL}")
    result, elapsed = run_monthly(cfg, tmp_path)
    assert_not_available(result, elapsed, "HTTP 404: not published", pipeline_env, limit=15)
    hits = not_found_server.hits  # type: ignore[attr-defined]
    assert sum(v for k, v in hits.items() if k.startswith("HEAD")) == 3
    assert not [k for k in hits if k.startswith("GET")], "the pre-flight downloads nothing"


def test_connection_refused_is_not_available(pipeline_env, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}{TEMPLATE_TAIL}"
    cfg = config_with(pipeline_env.cfg_file, tmp_path / "c.cfg", url_template=url)
    result, elapsed = run_monthly(cfg, tmp_path)
    assert_not_available(result, elapsed, "connection refused", pipeline_env, limit=15)


def test_unresolvable_host_is_not_available(pipeline_env, tmp_path):
    cfg = config_with(
        pipeline_env.cfg_file, tmp_path / "c.cfg", url_template=f"http://nonexistent.invalid{TEMPLATE_TAIL}"
    )
    result, elapsed = run_monthly(cfg, tmp_path)
    # "does not resolve" when the resolver answers; "no answer within" when there is no resolver at all
    reason = "does not resolve" if "does not resolve" in result.stderr else "no answer within"
    assert_not_available(result, elapsed, reason, pipeline_env, limit=15)


def test_a_source_that_never_answers_is_not_available_after_the_probe_timeout(pipeline_env, tmp_path, silent_socket):
    port = silent_socket.getsockname()[1]
    cfg = config_with(
        pipeline_env.cfg_file,
        tmp_path / "c.cfg",
        url_template=f"http://127.0.0.1:{port}{TEMPLATE_TAIL}",
        probe_timeout_seconds="1",
    )
    result, elapsed = run_monthly(cfg, tmp_path)
    assert_not_available(result, elapsed, "no answer", pipeline_env, limit=15)


def test_offline_never_touches_the_network(pipeline_env, tmp_path, silent_socket):
    port = silent_socket.getsockname()[1]
    cfg = config_with(
        pipeline_env.cfg_file,
        tmp_path / "c.cfg",
        url_template=f"http://127.0.0.1:{port}{TEMPLATE_TAIL}",
        offline="true",
        probe_timeout_seconds="60",  # would be waited for if the network were touched
    )
    result, elapsed = run_monthly(cfg, tmp_path)
    assert_not_available(result, elapsed, "[download] offline = true", pipeline_env, limit=15)
    silent_socket.setblocking(False)
    with pytest.raises(BlockingIOError):
        silent_socket.accept()  # no connection was ever made


@pytest.mark.slow
def test_offline_still_runs_what_is_on_disk(pipeline_env, tmp_path, silent_socket):
    port = silent_socket.getsockname()[1]
    cfg = config_with(
        pipeline_env.cfg_file,
        tmp_path / "c.cfg",
        url_template=f"http://127.0.0.1:{port}{TEMPLATE_TAIL}",
        offline="true",
    )
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "--train-months", "2021-01", "--val-month", "2021-02",
         "--test-month", "2021-03"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_404_in_the_task_is_tried_exactly_once(pipeline_env, run_tasks, config, not_found_server):
    """Without the pre-flight (e.g. `luigi --module`), TripData gets one attempt: no in-task retry, no
    scheduler retry, even with scheduler and download retries configured."""
    from tasks.data import TripData

    host, port = not_found_server.server_address[:2]
    config.set("download", "url_template", f"http://{host}:{port}{TEMPLATE_TAIL}")
    config.set("download", "retries", "4")
    config.set("scheduler", "retry_count", "3")
    config.set("scheduler", "retry_delay", "0.1")
    started = time.monotonic()
    result = run_tasks([TripData(color="green", month=dt.date(2021, 7, 1))])
    assert not result.ok
    assert not_found_server.hits["GET /green_tripdata_2021-07.parquet"] == 1  # type: ignore[attr-defined]
    assert time.monotonic() - started < 10


def test_offline_task_refuses_to_download(pipeline_env, run_tasks, config, silent_socket):
    from tasks.data import TripData

    config.set("download", "url_template", f"http://127.0.0.1:{silent_socket.getsockname()[1]}{TEMPLATE_TAIL}")
    config.set("download", "offline", "true")
    result = run_tasks([TripData(color="green", month=dt.date(2021, 7, 1))])
    assert not result.ok
    silent_socket.setblocking(False)
    with pytest.raises(BlockingIOError):
        silent_socket.accept()
