"""The FastAPI service's robustness (issue 10 §5) and conventions (issue 13 §1-2), against a real uvicorn.

Every malformed request class gets a 4xx naming the field (never a 500); a stalled or trickled body gets 408
at the total deadline; concurrency and idle keep-alive are bounded; the OpenAPI description is served; the
Prometheus counters move; SIGTERM during a burst loses no accepted request; ``--workers 2`` adds up the
workers' metrics. Fixtures (the two-model registry, the client, the in-thread server) are test_service.py's.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port

from tripduration.registry.store import ModelRegistry
from tripduration.service.server import ServeOptions

from . import test_service as service
from .test_service import MODEL_NAME, TIMEOUT, Client, Trained, _trip, durations, good_trip, trips_of

trained, registry, serve = service.trained, service.registry, service.serve  # the fixtures, used by name

FULL_TRIP = '{"pickup_datetime": "2021-01-12T08:30:00", "PULocationID": 74, "DOLocationID": 75, "trip_distance": 1.5'


def _raw(port: int, data: bytes, timeout: float = TIMEOUT) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes and read one HTTP answer (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def _post_head(length: bytes | str, extra: str = "") -> bytes:
    length = length.encode() if isinstance(length, str) else length
    return b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + (
        length + b"\r\n" + extra.encode() + b"\r\n"
    )


def _json_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body[:300])
    assert headers.get("content-type") == "application/json", headers
    answer = json.loads(body)
    assert set(answer) == {"error", "field", "index"}, answer
    return answer


# --------------------------------------------------------------------------- malformed HTTP and JSON
@pytest.mark.parametrize(
    "length",
    [
        pytest.param("١٢".encode(), id="arabic-indic-digits"),
        pytest.param("１２".encode(), id="fullwidth-digits"),
        pytest.param(b"9" * 5000, id="5000-digits"),
        pytest.param(b"-1", id="negative"),
    ],
)
def test_bad_content_length_is_a_400_naming_the_header(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client], length: bytes
) -> None:
    client = serve(registry)
    status, headers, body = _raw(client.port, _post_head(length) + b"{}")
    answer = _json_error(status, headers, body)
    assert status == 400 and answer["field"] == "Content-Length", answer
    assert "content-length" in answer["error"].lower()
    assert client.predict(good_trip(trained)).status == 200


HUGE = "9" * 5000
BAD_BODIES = [
    # id, body, field, words the error must hold
    pytest.param(
        FULL_TRIP.replace('"PULocationID": 74', f'"PULocationID": {HUGE}') + "}",
        "PULocationID",
        ["5000 digits"],
        id="int-5000-digits-in-code",
    ),
    pytest.param(
        FULL_TRIP.replace('"trip_distance": 1.5', f'"trip_distance": -{HUGE}') + "}",
        "trip_distance",
        ["5000 digits"],
        id="int-5000-digits-in-distance",
    ),
    pytest.param(
        FULL_TRIP.replace("1.5", "1" + "0" * 400) + "}",
        "trip_distance",
        ["trip_distance", "1000"],
        id="int-beyond-float-range-distance",
    ),
    pytest.param(
        FULL_TRIP + ', "passenger_count": 1' + "0" * 400 + "}",
        "passenger_count",
        ["passenger_count"],
        id="int-beyond-float-range-count",
    ),
    pytest.param(
        FULL_TRIP.replace("1.5", "1e400") + "}", "trip_distance", ["trip_distance", "inf"], id="float-literal-overflow"
    ),
    pytest.param(
        FULL_TRIP.replace("1.5", "-Infinity") + "}", "trip_distance", ["trip_distance", "inf"], id="minus-infinity"
    ),
    pytest.param("[" * 100_000 + "]" * 100_000, None, ["nested"], id="nesting-100k"),
    pytest.param(
        '{"PULocationID": ' + "[" * 100_000 + "]" * 100_000 + "}", None, ["nested"], id="nesting-100k-in-a-field"
    ),
    pytest.param(
        FULL_TRIP.replace("2021-01-12T08:30:00", "0001-01-01T00:30:00+05:00") + "}",
        "pickup_datetime",
        ["0001-01-01T00:30:00+05:00", "2000..2100"],
        id="pickup-year-1-with-offset",
    ),
    pytest.param(
        FULL_TRIP.replace("2021-01-12T08:30:00", "9999-12-31T23:30:00-05:00") + "}",
        "pickup_datetime",
        ["9999"],
        id="pickup-year-9999-with-offset",
    ),
    pytest.param(
        FULL_TRIP.replace("2021-01-12T08:30:00", "2000-01-01T01:00:00+14:00") + "}",
        "pickup_datetime",
        ["2000..2100"],
        id="pickup-offset-into-1999",
    ),
    pytest.param(FULL_TRIP.replace("75", '"75"') + "}", "DOLocationID", ["DOLocationID", "'75'"], id="code-as-string"),
    pytest.param(FULL_TRIP.replace("1.5", '"1.5"') + "}", "trip_distance", ["trip_distance"], id="distance-as-string"),
    pytest.param(
        FULL_TRIP.replace("2021-01-12T08:30:00", "08:30:00") + "}",
        "pickup_datetime",
        ["08:30:00"],
        id="pickup-time-only",
    ),
    pytest.param(
        FULL_TRIP.replace('"2021-01-12T08:30:00"', "1610440200") + "}",
        "pickup_datetime",
        ["pickup_datetime"],
        id="pickup-as-epoch-number",
    ),
    pytest.param(FULL_TRIP + ', "trip_type": true}', "trip_type", ["trip_type"], id="bool-trip-type"),
    pytest.param(
        FULL_TRIP + ', "tip_amount": 2, "fare_amount": 9}',
        "fare_amount",
        ["fare_amount", "tip_amount"],
        id="two-leaky-fields",
    ),
    pytest.param(FULL_TRIP.replace("74", "null") + "}", "PULocationID", ["PULocationID"], id="required-code-null"),
    pytest.param(HUGE, None, ["trip 0", "object"], id="top-level-huge-int"),
    pytest.param('"a trip"', None, ["trip 0", "object"], id="top-level-string"),
]


@pytest.mark.parametrize(("body", "field", "words"), BAD_BODIES)
def test_malformed_body_is_a_400_naming_the_field_never_a_500(
    trained: Trained,
    registry: ModelRegistry,
    serve: Callable[..., Client],
    body: str,
    field: str | None,
    words: list[str],
) -> None:
    client = serve(registry)
    raw = body.encode()
    status, headers, answer_bytes = _raw(client.port, _post_head(str(len(raw))) + raw)
    answer = _json_error(status, headers, answer_bytes)
    assert status == 400 and answer["field"] == field, answer
    for word in words:
        assert word.lower() in answer["error"].lower(), answer["error"]
    assert len(answer["error"]) < 600, "a huge value is not echoed whole"
    assert client.predict(good_trip(trained)).status == 200


def test_a_batch_names_the_index_of_the_bad_trip(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    answer = client.predict([_trip(), _trip(), _trip(VendorID=100)])
    assert answer.status == 400 and answer.body["index"] == 2 and answer.body["field"] == "VendorID", answer.body
    assert "100" in answer.body["error"] and "0 and 99" in answer.body["error"]


# --------------------------------------------------------------------------- time and connection limits
def test_stalled_body_is_408_at_the_deadline(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry, body_timeout=1.0)
    started = time.monotonic()
    status, headers, body = _raw(client.port, _post_head("100") + b'{"PULocati')
    answer = _json_error(status, headers, body)
    assert status == 408, answer
    assert "10 bytes" in answer["error"] and "100" in answer["error"]
    assert headers.get("connection") == "close"
    assert 0.9 < time.monotonic() - started < 5
    assert client.predict(good_trip(trained)).status == 200


def test_trickled_body_is_cut_at_the_total_deadline_not_per_byte(
    trained: Trained, registry: ModelRegistry, serve: Callable
) -> None:
    """One byte every 0.3 s never leaves the connection silent for long, yet the request ends at 1.5 s."""
    client = serve(registry, body_timeout=1.5)
    body = json.dumps(good_trip(trained)).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", client.port), timeout=TIMEOUT) as sock:
        sock.sendall(_post_head(str(len(body))))
        sent = 0
        sock.settimeout(0.3)
        reply = b""
        while sent < len(body) and time.monotonic() - started < 8:
            try:
                sock.sendall(body[sent : sent + 1])
                sent += 1
                reply += sock.recv(65536)  # waits up to 0.3 s: the trickle rate
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if reply:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(TIMEOUT)
        while not reply.endswith(b"}"):
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert sent < len(body), "the whole body got through: the deadline did not hold"
    assert 1.4 < elapsed < 4, elapsed
    assert b'"error"' in reply
    assert client.health().status == 200


def test_concurrency_over_the_limit_is_refused_at_once(
    trained: Trained, registry: ModelRegistry, serve: Callable
) -> None:
    client = serve(registry, serve_options=ServeOptions(port=0, limit_concurrency=3), body_timeout=5.0)
    held = []
    try:
        for _ in range(2):  # two requests in flight, their bodies never finished; uvicorn counts the new one too
            sock = socket.create_connection(("127.0.0.1", client.port), timeout=TIMEOUT)
            sock.sendall(_post_head("100") + b"{")
            held.append(sock)
        time.sleep(0.3)
        started = time.monotonic()
        status, _headers, _body = _raw(client.port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status == 503
        assert time.monotonic() - started < 2
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + TIMEOUT
    while client.health().status != 200:  # the slots free up once the held connections are gone
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_idle_keep_alive_connection_is_closed(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry, serve_options=ServeOptions(port=0, keep_alive=1))
    with socket.create_connection(("127.0.0.1", client.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        assert response.status == 200 and not response.will_close
        started = time.monotonic()
        assert sock.recv(1) == b"", "the server closes an idle connection"
        assert 0.5 < time.monotonic() - started < 4


# --------------------------------------------------------------------------- OpenAPI
def test_openapi_description_is_served_and_describes_the_trip(
    trained: Trained, registry: ModelRegistry, serve: Callable
) -> None:
    client = serve(registry)
    conn = client.connection()
    conn.request("GET", "/openapi.json")
    response = conn.getresponse()
    spec = json.loads(response.read())
    assert response.status == 200
    assert spec["openapi"].startswith("3.")
    post = spec["paths"]["/predict"]["post"]
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Trip"} in body_schema["anyOf"]
    trip = spec["components"]["schemas"]["Trip"]
    assert set(trip["required"]) == {"pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"}
    assert trip["additionalProperties"] is False
    assert trip["properties"]["PULocationID"]["minimum"] == 1 and trip["properties"]["PULocationID"]["maximum"] == 265
    assert trip["properties"]["trip_distance"]["maximum"] == 100
    assert {"200", "400", "408", "411", "413", "503"} <= set(post["responses"])
    for path in ("/health", "/model", "/metrics"):
        assert "get" in spec["paths"][path]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs <= set(spec["components"]["schemas"]), refs - set(spec["components"]["schemas"])
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not a dependency: the structural checks above stand in for it
        pass
    else:
        validate(spec)
    conn.request("GET", "/docs")
    docs = conn.getresponse()
    assert docs.status == 200 and "/openapi.json" in docs.read().decode()
    conn.close()


# --------------------------------------------------------------------------- metrics
def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {series with labels: value}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/plain")
    finally:
        conn.close()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def _series(values: dict[str, float], metric: str, **labels: str) -> float:
    """Sum of the series of ``metric`` whose labels include ``labels`` (a worker's pid label is ignored)."""
    total = 0.0
    for series, value in values.items():
        name, _, label_text = series.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if name == metric and all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


def test_metrics_counters_move_after_requests(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    before = scrape(client.port)
    assert _series(before, "tripduration_serving_model", name=MODEL_NAME, version="v0001") == 1
    assert client.predict(trips_of(trained.requests.iloc[:3])).status == 200
    assert client.predict(good_trip(trained)).status == 200
    assert client.call("POST", "/predict", raw=b"{").status == 400
    assert client.call("GET", "/nope").status == 404
    joblib_tamper = registry.model_path("v0002")
    joblib_tamper.write_bytes(joblib_tamper.read_bytes() + b"tampered")
    with registry.lock():
        registry.set_production("v0002", "tampered")
    assert client.health().body["last_error"]
    after = scrape(client.port)

    def moved(name: str, **labels: str) -> float:
        return _series(after, name, **labels) - _series(before, name, **labels)

    assert moved("tripduration_http_requests_total", endpoint="/predict", method="POST", status="200") == 2
    assert moved("tripduration_http_requests_total", endpoint="/predict", method="POST", status="400") == 1
    assert moved("tripduration_http_requests_total", endpoint="other", method="GET", status="404") == 1
    assert moved("tripduration_http_request_duration_seconds_count", endpoint="/predict") == 3
    assert moved("tripduration_predictions_total") == 4
    assert moved("tripduration_model_reload_failures_total") == 1
    assert _series(after, "tripduration_serving_model", version="v0001") == 1  # still serving the good one

    registry.rollback("v0001", "back")
    assert client.health().body["last_error"] is None


def test_metrics_follow_a_swap(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    with registry.lock():
        registry.set_production("v0002", "swap")
    assert client.predict(good_trip(trained)).body["model"]["version"] == "v0002"
    values = scrape(client.port)
    assert _series(values, "tripduration_serving_model", version="v0002") == 1
    assert _series(values, "tripduration_serving_model", version="v0001") == 0


# --------------------------------------------------------------------------- the real `serve` command
def _start_serve(registry: ModelRegistry, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, int, Path, Path]:
    cfg = tmp_path / "serve-luigi.cfg"
    cfg.write_text(f"[paths]\nregistry_dir = {registry.root}\n")
    port = free_port()
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "pipeline.py"), "serve", "--port", str(port), *extra],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "LUIGI_CONFIG_PATH": str(cfg)},
            cwd=tmp_path,
        )
    client = Client(port)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"serve exited with {proc.returncode}: {err.read_text()[-2000:]}"
        try:
            if client.health().status == 200:
                return proc, port, out, err
        except OSError:
            pass
        assert time.monotonic() < deadline, f"serve did not answer: {err.read_text()[-2000:]}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(TIMEOUT)


def _expect_continue(port: int, length: int) -> socket.socket:
    """Open a POST with ``Expect: 100-continue`` and wait for ``100 Continue``: from then on the server is
    working on this request (its application asked for the body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(_post_head(str(length), "Expect: 100-continue\r\n"))
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(1024)
        assert chunk, "the server closed the connection before 100 Continue"
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 100"), reply
    return sock


NOT_ACCEPTED = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def _burst(client: Client, trips: list[dict[str, Any]], results: list[str], stop: threading.Event) -> None:
    """Send predictions on one keep-alive connection until ``stop``; record each outcome in ``results``."""
    conn = client.connection()
    while not stop.is_set():
        try:
            answer = client.predict(trips, conn=conn)
            results.append("ok" if answer.status == 200 and len(durations(answer)) == 8 else repr(answer))
        except NOT_ACCEPTED:
            results.append("not accepted")
            conn.close()
            conn = client.connection()
            if stop.wait(0.05):
                break
        except Exception as exc:  # a partial answer, a bad status: the failures this test looks for
            results.append(f"{type(exc).__name__}: {exc}")
            break
    conn.close()


def test_sigterm_during_a_burst_loses_no_accepted_request(
    trained: Trained, registry: ModelRegistry, tmp_path: Path
) -> None:
    """Requests the server had started (in flight) get complete 200 answers after SIGTERM and the process exits
    0. Requests sent after the listening socket closed fail to connect (refused) or, on an idle keep-alive
    connection being closed, get no byte at all: those were never accepted and a client may retry them."""
    proc, port, _out, err = _start_serve(registry, tmp_path)
    try:
        client = Client(port)
        trips = trips_of(trained.requests)
        body = json.dumps(trips).encode()
        results: list[str] = []
        stop_burst = threading.Event()

        def burst() -> None:
            _burst(client, trips, results, stop_burst)

        threads = [threading.Thread(target=burst, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while results.count("ok") < 40:
            assert time.monotonic() < deadline, results[-5:]
            time.sleep(0.01)
        in_flight = [_expect_continue(port, len(body)) for _ in range(4)]
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the server is shutting down, waiting for the requests in flight
        assert proc.poll() is None, "the server exited with requests in flight"
        answers = []
        for sock in in_flight:
            with sock:
                sock.sendall(body)
                response = http.client.HTTPResponse(sock)
                response.begin()
                answers.append((response.status, json.loads(response.read())))
        assert proc.wait(TIMEOUT) == 0, err.read_text()[-2000:]
        stop_burst.set()
        for t in threads:
            t.join(TIMEOUT)
    finally:
        stop_burst.set()
        _stop(proc)
    for status, answer in answers:
        assert status == 200 and len(answer["predictions"]) == len(trips), answer
    failures = [r for r in results if r not in ("ok", "not accepted")]
    assert not failures, failures[:5]
    assert results.count("ok") >= 40


@pytest.mark.slow
def test_workers_share_one_port_and_add_up_their_metrics(
    trained: Trained, registry: ModelRegistry, tmp_path: Path
) -> None:
    proc, port, out, err = _start_serve(registry, tmp_path, "--workers", "2")
    try:
        client = Client(port)
        before = _series(scrape(port), "tripduration_predictions_total")
        requests = 30
        for _ in range(requests):  # a new connection each time: the kernel spreads them over the workers
            assert client.predict(trips_of(trained.requests.iloc[:2])).status == 200
        values = scrape(port)
        assert _series(values, "tripduration_predictions_total") - before == 2 * requests
        pids = {dict(re.findall(r'(\w+)="([^"]*)"', s)).get("pid") for s in values if "serving_model" in s}
        assert _series(values, "tripduration_serving_model", version="v0001") == 1, pids
        folder = re.search(r"kept in (\S+)", out.read_text())
        assert folder and Path(folder.group(1)).is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()[-2000:]
        assert not Path(folder.group(1)).exists(), "the metrics folder is removed at exit"
    finally:
        _stop(proc)
