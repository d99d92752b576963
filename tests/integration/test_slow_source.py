"""Issue 21.3: a slow source cannot hold the run (and its lock) for hours.

``pipeline.py monthly --month 2021-07`` as a real process, against a local server that announces each month's
file and sends it at 2 kB/s. With ``[download] deadline_seconds = 2`` (and no minimum rate) or
``min_bytes_per_second`` above the trickle, the run must end with exit 30 within seconds, naming the URLs,
with no partial file anywhere: work directory, raw directory, temporary directory.
"""

from __future__ import annotations

import configparser
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONTHS = ("2021-05", "2021-06", "2021-07")


class Trickle(http.server.BaseHTTPRequestHandler):
    """Every month exists (HEAD 200, 40 kB announced) and comes at 2 kB/s."""

    protocol_version = "HTTP/1.1"
    SIZE, STEP, PAUSE = 40_000, 100, 0.05

    def log_message(self, *_args: object) -> None:
        return None

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.SIZE))
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.SIZE))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        stop = self.server.stop  # type: ignore[attr-defined]
        try:
            for _ in range(0, self.SIZE, self.STEP):
                if stop.is_set():
                    return
                self.wfile.write(b"\0" * self.STEP)
                self.wfile.flush()
                time.sleep(self.PAUSE)
        except (BrokenPipeError, ConnectionResetError):
            return


@pytest.fixture
def trickle() -> Iterator[str]:
    """The url_template of a trickling source on 127.0.0.1."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    httpd.stop = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}/{{color}}_tripdata_{{month}}.parquet"
    httpd.stop.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    ("limits", "said"),
    [
        ({"deadline_seconds": "2", "min_bytes_per_second": "0"}, "not downloaded within the deadline of 2 s"),
        ({"min_bytes_per_second": "10000", "min_rate_window_seconds": "1"}, "below the minimum of 10000 bytes/s"),
    ],
    ids=["deadline", "min_rate"],
)
def test_a_trickling_source_ends_the_run_with_exit_30_naming_the_url_and_no_partial_file(
    pipeline_env, tmp_path, trickle, limits, said
):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(pipeline_env.cfg_file)
    settings = {"url_template": trickle, "timeout_seconds": "5", "retries": "2", **limits}
    for key, value in settings.items():
        parser.set("download", key, value)
    cfg = tmp_path / "slow.cfg"
    with open(cfg, "w") as fh:
        parser.write(fh)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg), "TMPDIR": str(scratch)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "monthly", "--month", "2021-07"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 30, result.stderr[-3000:]
    start = "not downloaded" if "deadline" in said else "too slow"
    for month in MONTHS:
        url = trickle.format(color="green", month=month)
        assert f"{url}: {start}" in result.stderr, result.stderr[-3000:]
    assert said in result.stderr
    assert "nothing kept: use a faster source" in result.stderr and "([download] deadline_seconds = " in result.stderr
    # 3 months one after the other, each ending within its limit plus one socket timeout; generous for a busy machine
    assert elapsed < 90, f"{elapsed:.0f} s"
    fetched = tuple(f"tripdata_{month}" for month in MONTHS)
    left = [p for p in tmp_path.rglob("*") if p.is_file() and (any(f in p.name for f in fetched) or "-tmp-" in p.name)]
    assert left == [], "no partial file anywhere"
    assert list(scratch.iterdir()) == []
    print(f"\nslow source ({'/'.join(limits)}): exit 30 after {elapsed:.1f} s")
