"""What a client can do to the service with connections and odd requests alone (issue 21 section 4, issue 22).

- Idle connections: a few hundred TCP connections that never send a request hold no request slot (health
  and predictions keep answering) and are closed after the keep-alive time.
- A request head trickled byte by byte gets 408 at the head timeout and the connection is closed.
- Every label of ``/metrics`` has a fixed set of values: invented HTTP methods, paths and statuses do not
  add series.
- Every accepted connection has TCP_NODELAY (uvicorn's own listening socket does not give it: an answer in
  two segments then waits ~40 ms for the client's delayed ACK).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable

import pytest

from tripduration.registry.store import ModelRegistry
from tripduration.service.metrics import ENDPOINTS, METHODS, STATUSES
from tripduration.service.server import ServeOptions

from . import test_service as service
from .test_service import TIMEOUT, Client, Trained, good_trip
from .test_service_limits import scrape

trained, registry, serve = service.trained, service.registry, service.serve  # the fixtures, used by name

IDLE_CONNECTIONS = 300


def test_idle_connections_hold_no_slot_and_are_closed(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client]
) -> None:
    client = serve(registry, serve_options=ServeOptions(port=0, keep_alive=2))
    idle = [socket.create_connection(("127.0.0.1", client.port), timeout=TIMEOUT) for _ in range(IDLE_CONNECTIONS)]
    try:
        time.sleep(0.2)  # all accepted by the server
        assert ServeOptions().limit_concurrency < IDLE_CONNECTIONS
        for _ in range(3):
            health = client.health()
            assert health.status == 200, health.body
            assert client.predict(good_trip(trained)).status == 200
        for sock in idle:  # closed by the server after the keep-alive time, without a byte sent
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
    assert client.health().status == 200


def test_a_trickled_request_head_gets_408_at_the_head_timeout(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client]
) -> None:
    client = serve(registry, serve_options=ServeOptions(port=0, header_timeout=1.0))
    head = b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    reply = b""
    with socket.create_connection(("127.0.0.1", client.port), timeout=TIMEOUT) as sock:
        sock.settimeout(0.25)
        for i in range(len(head)):  # one byte every 0.25 s: the connection is never silent for long
            try:
                sock.sendall(head[i : i + 1])
                reply += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if reply:
                break
            if time.monotonic() - started > 8:
                break
        sock.settimeout(TIMEOUT)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b"request head was not received within 1 s" in reply
    assert time.monotonic() - started < 6
    assert client.health().status == 200


def _raw_status(port: int, method: str, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".encode())
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return int(reply[9:12])


def test_metric_labels_have_a_fixed_set_of_values(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client]
) -> None:
    client = serve(registry)
    for i in range(200):  # invented methods (a token is a valid HTTP method), paths, and a few real requests
        assert _raw_status(client.port, f"SCAN{i}", "/predict" if i % 2 else f"/scan/{i}") in (404, 405)
    for i in range(20):
        _raw_status(client.port, "GET", f"/x{i}?q={i}")
    assert client.predict(good_trip(trained)).status == 200
    values = scrape(client.port)
    series = [s for s in values if s.startswith("tripduration_http_requests_total{")]
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', s)) for s in series]
    assert {label["method"] for label in labels} <= METHODS | {"other"}
    assert {label["endpoint"] for label in labels} <= ENDPOINTS | {"other"}
    statuses = {label["status"] for label in labels}
    assert statuses <= {str(s) for s in STATUSES} | {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}, statuses
    assert len(series) <= 10, series


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the server's socket through /proc")
def test_accepted_connections_have_tcp_nodelay(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client]
) -> None:
    """The in-process server accepted the connection: its socket is one of this process's descriptors."""
    client = serve(registry)
    conn = client.connection()
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
        assert conn.sock is not None
        ours = conn.sock.getsockname()
        found = []
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                sock = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            with sock:
                try:
                    if sock.type == socket.SOCK_STREAM and sock.getpeername() == ours:
                        found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                except OSError:
                    continue
        assert found == [1], found
    finally:
        conn.close()
