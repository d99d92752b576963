"""download() and probe() against a real local HTTP server: retry only a transfer that broke, fail fast on the rest."""

from __future__ import annotations

import collections
import http.server
import io
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tripduration.data.fetch import TransferLimits, check_url, download, probe, probe_all
from tripduration.errors import DownloadError


def tiny_parquet_bytes() -> bytes:
    table = pa.table({"PULocationID": pa.array([74, 41], pa.int64()), "trip_distance": [1.5, 2.0]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


PARQUET = tiny_parquet_bytes()
JUNK = b"<html><body>Access denied</body></html>\n" * 20


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes of the fake TLC server; ``server.hits`` counts requests per path."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:  # keep the test output clean
        return None

    def _send(self, status: int, body: bytes = b"", length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_HEAD(self) -> None:
        """Status line and headers only; counted as ``HEAD <path>``. ``/no-head.parquet`` does not do HEAD."""
        self.server.hits[f"HEAD {self.path}"] += 1  # type: ignore[attr-defined]
        status = {"/ok.parquet": 200, "/forbidden.parquet": 403, "/always-500.parquet": 503}.get(self.path, 404)
        self.send_response(501 if self.path == "/no-head.parquet" else status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_GET(self) -> None:
        hits = self.server.hits  # type: ignore[attr-defined]
        hits[self.path] += 1
        n = hits[self.path]
        if self.path in ("/ok.parquet", "/no-head.parquet"):
            self._send(200, PARQUET)
        elif self.path == "/flaky.parquet":
            self._send(500, b"oops") if n <= 2 else self._send(200, PARQUET)
        elif self.path == "/busy.parquet":
            self._send(429 if n == 1 else 200, b"slow down" if n == 1 else PARQUET)
        elif self.path == "/always-500.parquet":
            self._send(503, b"unavailable")
        elif self.path == "/forbidden.parquet":
            self._send(403, b"no")
        elif self.path == "/junk.parquet":
            self._send(200, JUNK)
        elif self.path == "/short.parquet":
            # first answer promises more bytes than it sends, then closes the connection
            if n == 1:
                self._send(200, PARQUET[: len(PARQUET) // 2], length=len(PARQUET))
            else:
                self._send(200, PARQUET)
        elif self.path == "/chunked-cut.parquet":
            self._send_chunked(PARQUET, cut=n == 1)
        else:
            self._send(404, b"not found")

    def _send_chunked(self, body: bytes, cut: bool) -> None:
        """One chunk; with ``cut``, the connection closes halfway through it (a dropped transfer)."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(f"{len(body):x}\r\n".encode())
        self.wfile.write(body[: len(body) // 2] if cut else body + b"\r\n0\r\n\r\n")
        self.close_connection = True


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.hits = collections.Counter()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def url_of(httpd: http.server.ThreadingHTTPServer, path: str) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}{path}"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def test_valid_file_is_downloaded(server, tmp_path, sleeps):
    dest = tmp_path / "green.parquet.tmp"
    progress: list[tuple[int, int | None]] = []
    size = download(url_of(server, "/ok.parquet"), dest, sleep=sleeps, progress=lambda d, t: progress.append((d, t)))
    assert size == len(PARQUET)
    assert dest.read_bytes() == PARQUET
    assert server.hits["/ok.parquet"] == 1
    assert sleeps == []
    assert progress[-1] == (len(PARQUET), len(PARQUET))


def test_404_fails_at_once_naming_the_url(server, tmp_path, sleeps):
    url = url_of(server, "/green_tripdata_2031-01.parquet")
    dest = tmp_path / "x.parquet"
    with pytest.raises(DownloadError, match=re.escape(url) + r".*HTTP 404.*not retried") as info:
        download(url, dest, sleep=sleeps)
    assert info.value.transient is False
    assert server.hits["/green_tripdata_2031-01.parquet"] == 1
    assert sleeps == []
    assert not dest.exists()


def test_403_is_not_retried_either(server, tmp_path, sleeps):
    with pytest.raises(DownloadError, match="HTTP 403") as info:
        download(url_of(server, "/forbidden.parquet"), tmp_path / "x.parquet", sleep=sleeps)
    assert info.value.transient is False
    assert server.hits["/forbidden.parquet"] == 1


def test_500_twice_then_success_retries_with_exponential_backoff(server, tmp_path, sleeps):
    dest = tmp_path / "flaky.parquet"
    size = download(url_of(server, "/flaky.parquet"), dest, backoff=2.0, sleep=sleeps)
    assert size == len(PARQUET)
    assert dest.read_bytes() == PARQUET
    assert server.hits["/flaky.parquet"] == 3
    assert sleeps == [2.0, 4.0]


def test_429_is_retried(server, tmp_path, sleeps):
    download(url_of(server, "/busy.parquet"), tmp_path / "busy.parquet", backoff=0.5, sleep=sleeps)
    assert server.hits["/busy.parquet"] == 2
    assert sleeps == [0.5]


def test_persistent_5xx_gives_up_after_the_retries(server, tmp_path, sleeps):
    url = url_of(server, "/always-500.parquet")
    dest = tmp_path / "x.parquet"
    with pytest.raises(DownloadError, match=re.escape(url) + r".*HTTP 503.*giving up after retries") as info:
        download(url, dest, retries=2, backoff=1.0, sleep=sleeps)
    assert info.value.transient is True
    assert server.hits["/always-500.parquet"] == 3
    assert sleeps == [1.0, 2.0]
    assert not dest.exists()


def test_connection_closed_early_is_retried(server, tmp_path, sleeps):
    dest = tmp_path / "short.parquet"
    assert download(url_of(server, "/short.parquet"), dest, sleep=sleeps) == len(PARQUET)
    assert server.hits["/short.parquet"] == 2
    assert sleeps == [2.0]
    assert dest.read_bytes() == PARQUET


def test_chunked_transfer_cut_off_is_retried(server, tmp_path, sleeps):
    dest = tmp_path / "chunked.parquet"
    assert download(url_of(server, "/chunked-cut.parquet"), dest, sleep=sleeps) == len(PARQUET)
    assert server.hits["/chunked-cut.parquet"] == 2
    assert sleeps == [2.0]


def test_corrupt_file_fails_naming_the_url_and_leaves_no_file(server, tmp_path, sleeps):
    url = url_of(server, "/junk.parquet")
    dest = tmp_path / "junk.parquet"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*not readable parquet") as info:
        download(url, dest, sleep=sleeps)
    assert info.value.transient is False
    assert not dest.exists()
    assert server.hits["/junk.parquet"] == 1
    assert sleeps == []


def test_file_url_is_supported(tmp_path, sleeps):
    src = tmp_path / "remote" / "green_tripdata_2021-01.parquet"
    src.parent.mkdir()
    src.write_bytes(PARQUET)
    dest = tmp_path / "dest.parquet"
    assert download(src.as_uri(), dest, sleep=sleeps) == len(PARQUET)
    assert dest.read_bytes() == PARQUET


def test_missing_file_url_fails_at_once(tmp_path, sleeps):
    url = (tmp_path / "absent.parquet").as_uri()
    with pytest.raises(DownloadError, match=re.escape(url)) as info:
        download(url, tmp_path / "dest.parquet", sleep=sleeps)
    assert info.value.transient is False
    assert sleeps == []
    assert not (tmp_path / "dest.parquet").exists()


def closed_port() -> int:
    """A port that was just free: nothing listens there (connection refused)."""
    probe_server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = probe_server.server_address[1]
    probe_server.server_close()
    return port


def test_refused_connection_is_not_retried(tmp_path, sleeps):
    # issue 15.2: a refused connection means nothing is there; retrying only delays the "not available"
    url = f"http://127.0.0.1:{closed_port()}/x.parquet"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*not retried") as info:
        download(url, tmp_path / "x", retries=3, backoff=0.1, sleep=sleeps)
    assert info.value.transient is False
    assert sleeps == []


def test_dns_failure_is_not_retried(tmp_path, sleeps):
    url = "http://nonexistent.invalid/green_tripdata_2021-07.parquet"
    with pytest.raises(DownloadError, match=r"nonexistent\.invalid.*not retried") as info:
        download(url, tmp_path / "x", retries=3, sleep=sleeps)
    assert info.value.transient is False
    assert sleeps == []


def test_connect_timeout_is_not_retried_but_a_reset_during_the_request_is(tmp_path, sleeps):
    def opener(reason: BaseException):
        def open_(*_args: object, **_kwargs: object) -> None:
            raise urllib.error.URLError(reason)

        return open_

    with pytest.raises(DownloadError, match="not retried"):
        download("https://example.invalid/x", tmp_path / "x", sleep=sleeps, opener=opener(TimeoutError("timed out")))
    assert sleeps == []
    with pytest.raises(DownloadError, match="giving up after retries"):
        download(
            "https://example.invalid/x",
            tmp_path / "x",
            retries=1,
            sleep=sleeps,
            opener=opener(ConnectionResetError(104, "Connection reset by peer")),
        )
    assert sleeps == [2.0]


# --------------------------------------------------------------------------- probe: the pre-flight's question
@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) and never answers: a hung source."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_probe_finds_a_published_file(server):
    found = probe(url_of(server, "/ok.parquet"))
    assert found.available and found.reason == "HTTP 200"


@pytest.mark.parametrize(("path", "code"), [("/green_tripdata_2031-01.parquet", 404), ("/forbidden.parquet", 403)])
def test_probe_says_not_available_on_404_and_403_with_one_request(server, path, code):
    found = probe(url_of(server, path))
    assert not found.available
    assert found.reason.startswith(f"HTTP {code}")
    assert server.hits[f"HEAD {path}"] == 1
    assert server.hits[path] == 0  # no GET: nothing was downloaded


def test_probe_asks_with_a_ranged_get_when_the_server_does_not_do_head(server):
    found = probe(url_of(server, "/no-head.parquet"))
    assert found.available
    assert server.hits["HEAD /no-head.parquet"] == 1 and server.hits["/no-head.parquet"] == 1


def test_probe_counts_a_failing_server_as_reachable(server):
    found = probe(url_of(server, "/always-500.parquet"))
    assert found.available and "503" in found.reason  # the download's retries are for this


def test_probe_refused_dns_and_no_answer_are_not_available_within_the_timeout(silent_port):
    started = time.monotonic()
    refused = probe(f"http://127.0.0.1:{closed_port()}/x.parquet", timeout=1)
    dns = probe("http://nonexistent.invalid/x.parquet", timeout=1)
    hung = probe(f"http://127.0.0.1:{silent_port}/x.parquet", timeout=1)
    assert time.monotonic() - started < 5
    assert not refused.available and "connection refused" in refused.reason
    assert not dns.available and "does not resolve" in dns.reason
    assert not hung.available and "no answer" in hung.reason


def test_probe_of_a_file_url(tmp_path):
    (tmp_path / "a.parquet").write_bytes(PARQUET)
    assert probe((tmp_path / "a.parquet").as_uri()).available
    absent = probe((tmp_path / "b.parquet").as_uri())
    assert not absent.available and "no such file" in absent.reason


def test_probe_all_keeps_its_deadline_even_if_a_probe_hangs_in_dns():
    release = threading.Event()

    def opener(request: urllib.request.Request, timeout: float) -> None:
        if "slow" in request.full_url:
            release.wait(30)  # like getaddrinfo on a dead resolver: the socket timeout does not apply
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)  # type: ignore[arg-type]

    started = time.monotonic()
    found = probe_all(["http://slow.example/x", "http://fast.example/x"], timeout=0.5, opener=opener)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 3
    assert "no answer within 0.5 s" in found["http://slow.example/x"].reason
    assert found["http://fast.example/x"].reason.startswith("HTTP 404")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/green.parquet", "FTP://example.com/x", "/etc/passwd", "javascript:alert(1)", "gopher://x"],
)
def test_other_schemes_are_refused_before_any_io(url, tmp_path):
    opened: list[str] = []
    with pytest.raises(DownloadError, match="is not allowed") as info:
        download(url, tmp_path / "x", opener=lambda *a, **k: opened.append(a[0]))
    assert info.value.transient is False
    assert opened == []
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("url", ["http://h/x", "HTTPS://h/x", "file:///tmp/x"])
def test_allowed_schemes_pass_check_url(url):
    assert check_url(url) == url


def test_unknown_exceptions_from_the_opener_are_not_retried(tmp_path, sleeps):
    def opener(*_args: object, **_kwargs: object) -> None:
        raise ValueError("something unexpected")

    with pytest.raises(DownloadError, match="ValueError: something unexpected") as info:
        download("https://example.invalid/x.parquet", tmp_path / "x", sleep=sleeps, opener=opener)
    assert info.value.transient is False
    assert sleeps == []


def test_timeouts_are_retried(tmp_path, sleeps):
    calls: list[float] = []

    def opener(_url: str, timeout: float) -> None:
        calls.append(timeout)
        raise TimeoutError("timed out")

    with pytest.raises(DownloadError, match="giving up") as info:
        download(
            "https://example.invalid/x.parquet",
            Path(tmp_path / "x"),
            timeout=3.0,
            retries=3,
            sleep=sleeps,
            opener=opener,
        )
    assert info.value.transient is True
    assert calls == [3.0] * 4
    assert sleeps == [2.0, 4.0, 8.0]


# --------------------------------------------------------------------------- issue 21.3: a slow source
class Trickle(http.server.BaseHTTPRequestHandler):
    """Announces ``SIZE`` bytes and sends them ``STEP`` bytes every ``PAUSE`` s (2 kB/s): a source too slow."""

    protocol_version = "HTTP/1.1"
    SIZE, STEP, PAUSE = 40_000, 100, 0.05

    def log_message(self, *_args: object) -> None:
        return None

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.SIZE))
        self.end_headers()

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1  # type: ignore[attr-defined]
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
            return  # the client gave up: what the test wants


@pytest.fixture
def trickle() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    httpd.hits = collections.Counter()  # type: ignore[attr-defined]
    httpd.stop = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_a_trickling_source_fails_at_the_deadline_naming_the_url_and_keeps_nothing(trickle, tmp_path, sleeps):
    url = url_of(trickle, "/green_tripdata_2021-07.parquet")
    dest = tmp_path / "x.parquet"
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, dest, timeout=5, sleep=sleeps, limits=TransferLimits(deadline=1.5))
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert message.startswith(f"{url}: not downloaded within the deadline of 1.5 s (")
    assert "bytes received); not retried, nothing kept" in message and info.value.transient is False
    assert elapsed < 1.5 + 5 + 5, f"{elapsed:.1f} s: a read may end one timeout late, never more"
    assert trickle.hits["/green_tripdata_2021-07.parquet"] == 1 and sleeps == []
    assert not dest.exists()


def test_a_source_below_the_minimum_rate_fails_after_the_window(trickle, tmp_path, sleeps):
    url = url_of(trickle, "/green_tripdata_2021-07.parquet")
    dest = tmp_path / "x.parquet"
    started = time.monotonic()
    with pytest.raises(DownloadError, match=re.escape(url) + r": too slow: \d+ bytes in [12] s") as info:
        download(url, dest, timeout=5, sleep=sleeps, limits=TransferLimits(min_rate=10_000, window=1))
    assert time.monotonic() - started < 1 + 5 + 5
    assert "below the minimum of 10000 bytes/s over 1 s; not retried, nothing kept" in str(info.value)
    assert info.value.transient is False and sleeps == []
    assert not dest.exists()


class Clock:
    """A fake monotonic clock; ``sleep`` advances it (to check the deadline counts the waits between attempts)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Paced(io.BytesIO):
    """A response whose every read1 takes ``seconds`` of the fake clock."""

    def __init__(self, clock: Clock, chunks: list[tuple[bytes, float]]) -> None:
        super().__init__()
        self.clock, self.chunks, self.headers = clock, list(chunks), {}

    def read1(self, _size: int = -1) -> bytes:
        if not self.chunks:
            return b""
        data, seconds = self.chunks.pop(0)
        self.clock.now += seconds
        return data


def test_the_rate_is_kept_over_every_window_not_on_average(tmp_path):
    """Fast for 10 s, then a trickle: the average since the start stays high for minutes; the window catches it."""
    clock = Clock()
    chunks = [(b"x" * 100_000, 1.0)] * 10 + [(b"x" * 10, 1.0)] * 1000
    with pytest.raises(DownloadError, match=r"too slow: 50 bytes in 5 s \(10 bytes/s, 1000050 received\)"):
        download(
            "https://example.invalid/x.parquet", tmp_path / "x", sleep=clock.sleep, clock=clock,
            opener=lambda *_a, **_k: Paced(clock, chunks), limits=TransferLimits(min_rate=1000, window=5),
        )  # fmt: skip
    assert clock.now == 15.0  # failed at the end of the first slow window (10 s + 5 s)
    assert not (tmp_path / "x").exists()


def test_the_deadline_counts_every_attempt_and_wait_and_bounds_each_attempts_timeout(tmp_path):
    clock, timeouts = Clock(), []

    def opener(_url: str, timeout: float) -> None:
        timeouts.append(timeout)
        clock.now += timeout  # a read timeout: each attempt waits for the whole socket timeout
        raise TimeoutError("timed out")

    with pytest.raises(DownloadError) as info:
        download(
            "https://example.invalid/x.parquet", tmp_path / "x", timeout=4, retries=10, backoff=1, sleep=clock.sleep,
            clock=clock, opener=opener, limits=TransferLimits(deadline=12),
        )  # fmt: skip
    # 4 s attempt, wait 1, 4 s attempt, wait 2, then only 1 s is left: the last attempt gets that, not a whole
    # timeout; the next wait (4 s) would cross the deadline
    assert timeouts == [4, 4, 1] and clock.slept == [1, 2] and clock.now == 12
    assert str(info.value) == (
        "https://example.invalid/x.parquet: not downloaded within the deadline of 12 s (12 s spent, last attempt: "
        "TimeoutError: timed out); not retried, nothing kept: use a faster source or a longer deadline"
    )
