"""The HTTP prediction service (``tripduration.service``: FastAPI under uvicorn, and ``pipeline.py serve``).

A registry is built in a temporary folder from two small real models (the course baseline and a ridge)
fitted on a few thousand rows of a real month, without running the pipeline: v0001 is the baseline
(production), v0002 the ridge. Each test works on its own copy of that registry.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import uvicorn
from conftest import DATA, ROOT, free_port

import tripduration.registry.store as registry_module
from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.registry.store import ModelRegistry
from tripduration.service import MAX_BODY_BYTES, parse_trips
from tripduration.service.app import create_app
from tripduration.service.server import ServeOptions, uvicorn_config
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy

MODEL_NAME = "green-trip-duration"
TRAIN_ROWS = 3000
OPTIONAL = ("VendorID", "RatecodeID", "trip_type", "passenger_count")
TIMEOUT = 10


# --------------------------------------------------------------------------- fixtures
@dataclass
class Trained:
    template: Path  # registry root: v0001 baseline (production), v0002 ridge
    models: dict[str, Any]  # version -> fitted model
    requests: pd.DataFrame  # canonical rows (not used in training) to send to the service


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    kept, _rejected, _summary = validate_trip_file(
        DATA / "green_tripdata_2021-01.parquet", dt.date(2021, 1, 1), Rules()
    )
    table = model_table(kept).sample(frac=1.0, random_state=7).reset_index(drop=True)
    X, y = split_xy(table.iloc[:TRAIN_ROWS])
    held_out, _ = split_xy(table.iloc[TRAIN_ROWS : TRAIN_ROWS + 2000])
    # a few rows with every optional code and a few dispatch-app rows without them
    with_codes = held_out[held_out["RatecodeID"].notna()].head(4)
    without_codes = held_out[held_out["RatecodeID"].isna()].head(4)
    assert len(with_codes) == 4 and len(without_codes) == 4
    requests = pd.concat([with_codes, without_codes]).sort_index()

    work = tmp_path_factory.mktemp("service-models")
    registry = ModelRegistry(work / "models", MODEL_NAME)
    models: dict[str, Any] = {}
    for candidate in ("baseline_linreg", "ridge_a1"):
        model = build_pipeline(CANDIDATES[candidate]).fit(X, y)
        path = work / f"{candidate}.joblib"
        joblib.dump(model, path)
        rmse = float(np.sqrt(np.mean((model.predict(X) - y.to_numpy()) ** 2)))
        metadata = {
            "metrics": {"test": {"rmse": rmse}},
            "data": [{"role": "train", "month": "2021-01"}, {"role": "test", "month": "2021-03"}],
            "algorithm": {"candidate": candidate},
        }
        version = registry.register(path, metadata)
        models[version] = joblib.load(registry.model_path(version))
    assert sorted(models) == ["v0001", "v0002"]
    with registry.lock():
        registry.set_production("v0001", "test")
    return Trained(template=registry.root, models=models, requests=requests)


@pytest.fixture
def registry(trained: Trained, tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "models"
    shutil.copytree(trained.template, root)
    return ModelRegistry(root, MODEL_NAME)


@pytest.fixture
def empty_registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "empty-models", MODEL_NAME)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> Answer:
        own = conn is None
        conn = conn or self.connection()
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            ctype = response.getheader("Content-Type", "")
            assert ctype == "application/json", f"{method} {path}: answer is {ctype!r}, not JSON: {payload[:200]!r}"
            return Answer(response.status, json.loads(payload), dict(response.getheaders()))
        finally:
            if own:
                conn.close()

    def health(self) -> Answer:
        return self.call("GET", "/health")

    def predict(self, trips: Any, conn: http.client.HTTPConnection | None = None) -> Answer:
        return self.call("POST", "/predict", trips, conn=conn)


def start_uvicorn(app: Any, options: ServeOptions | None = None) -> tuple[int, Callable[[], None]]:
    """Run ``app`` under uvicorn (the configuration ``pipeline.py serve`` uses) in a thread on a free port of
    127.0.0.1; returns the port and a function that stops the server (gracefully) and waits for it."""
    config = uvicorn_config(app, options or ServeOptions(host="127.0.0.1", port=0))
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()

    return sock.getsockname()[1], stop


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Callable[..., Client]:
    """``serve(registry, **create_app_options)`` starts an in-process uvicorn server on a free port; it is shut
    down at the end of the test."""

    def start(registry: ModelRegistry, serve_options: ServeOptions | None = None, **options: Any) -> Client:
        app = create_app(registry, **options)
        port, stop = start_uvicorn(app, serve_options)
        request.addfinalizer(stop)
        client = Client(port)
        client.app = app  # type: ignore[attr-defined]
        return client

    return start


# --------------------------------------------------------------------------- helpers
def trip_json(row: pd.Series) -> dict[str, Any]:
    """One canonical row as the JSON trip object a client sends (missing optional codes left out)."""
    trip: dict[str, Any] = {
        "pickup_datetime": row["pickup_datetime"].isoformat(),
        "PULocationID": int(row["PULocationID"]),
        "DOLocationID": int(row["DOLocationID"]),
        "trip_distance": float(row["trip_distance"]),
    }
    for name in OPTIONAL:
        if not pd.isna(row[name]):
            trip[name] = int(row[name])
    return trip


def trips_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [trip_json(row) for _, row in frame.iterrows()]


def durations(answer: Answer) -> np.ndarray:
    assert answer.status == 200, answer.body
    predictions = answer.body["predictions"]
    assert all(isinstance(p["duration_min"], float) for p in predictions), predictions
    return np.array([p["duration_min"] for p in predictions])


def good_trip(trained: Trained) -> dict[str, Any]:
    return trip_json(trained.requests.iloc[0])


# --------------------------------------------------------------------------- 1. the real `serve` sub-command
def test_serve_subprocess_answers_health_model_and_predictions(
    trained: Trained, registry: ModelRegistry, tmp_path: Path
) -> None:
    cfg = tmp_path / "serve-luigi.cfg"
    cfg.write_text(f"[paths]\nregistry_dir = {registry.root}\n")
    port = free_port()
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "pipeline.py"), "serve", "--port", str(port)],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "LUIGI_CONFIG_PATH": str(cfg)},
            cwd=tmp_path,
        )
    try:
        client = Client(port)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}: {err.read_text()[-2000:]}"
            try:
                health = client.health()
                break
            except OSError:
                assert time.monotonic() < deadline, f"serve did not answer: {err.read_text()[-2000:]}"
                time.sleep(0.1)
        assert health.status == 200 and health.body["status"] == "ok" and health.body["version"] == "v0001"
        assert health.body["last_error"] is None

        # listens on this machine only by default
        startup = out.read_text()
        assert f"http://127.0.0.1:{port}" in startup, startup

        info = client.call("GET", "/model")
        assert info.status == 200
        assert info.body["name"] == MODEL_NAME and info.body["version"] == "v0001"
        assert info.body["algorithm"] == "baseline_linreg"
        assert info.body["trained_months"] == ["2021-01"] and info.body["test_month"] == "2021-03"
        expected_meta = registry.metadata("v0001")
        assert info.body["metrics"] == expected_meta["metrics"]
        assert info.body["model_sha256"] == expected_meta["model_sha256"]

        model = trained.models["v0001"]
        one = trained.requests.iloc[[0]]
        answer = client.predict(trip_json(one.iloc[0]))
        assert answer.body["model"] == {"name": MODEL_NAME, "version": "v0001"}
        got = durations(answer)
        assert got.shape == (1,)
        np.testing.assert_allclose(got, model.predict(one), atol=1e-3)

        three = trained.requests.iloc[[1, 5, 6]]  # codes present and absent
        assert three["RatecodeID"].isna().any() and three["RatecodeID"].notna().any()
        answer = client.predict(trips_of(three))
        assert answer.body["model"]["version"] == "v0001"
        got = durations(answer)
        np.testing.assert_allclose(got, model.predict(three), atol=1e-3)
        # the service parses exactly as parse_trips does
        np.testing.assert_allclose(got, model.predict(parse_trips(trips_of(three))), atol=1e-3)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
            pytest.fail("serve did not exit after SIGTERM")
    assert proc.returncode is not None


# --------------------------------------------------------------------------- 2. malformed input
def _trip(**changes: Any) -> dict[str, Any]:
    trip: dict[str, Any] = {
        "pickup_datetime": "2021-01-12T08:30:00",
        "PULocationID": 74,
        "DOLocationID": 75,
        "trip_distance": 1.5,
        "VendorID": 2,
        "RatecodeID": 1,
        "trip_type": 1,
        "passenger_count": 1,
    }
    for key, value in changes.items():
        if value is _DROP:
            trip.pop(key)
        else:
            trip[key] = value
    return trip


_DROP = object()


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


BAD_INPUTS = [
    # id, raw body, status, field, words the error must hold
    pytest.param(b'{"PULocationID": 74,', 400, None, ["json"], id="invalid-json"),
    pytest.param(b"\xff\xfe\x00garbage", 400, None, ["json"], id="not-utf8"),
    pytest.param(_body([]), 400, None, ["no trips"], id="empty-list"),
    pytest.param(_body([_trip(), 5]), 400, None, ["trip 1", "object"], id="non-object-item"),
    pytest.param(_body(_trip(PULocationID=_DROP)), 400, "PULocationID", ["PULocationID", "required"], id="missing-pu"),
    pytest.param(_body(_trip(PULocationID="abc")), 400, "PULocationID", ["PULocationID", "integer"], id="pu-abc"),
    pytest.param(_body(_trip(PULocationID=999)), 400, "PULocationID", ["PULocationID", "999"], id="pu-999"),
    pytest.param(_body(_trip(DOLocationID=74.5)), 400, "DOLocationID", ["DOLocationID", "integer"], id="do-74.5"),
    pytest.param(_body(_trip(trip_distance=-1)), 400, "trip_distance", ["trip_distance", "-1"], id="distance-neg"),
    pytest.param(_body(_trip(trip_distance="far")), 400, "trip_distance", ["trip_distance", "far"], id="distance-far"),
    pytest.param(
        _body(_trip(pickup_datetime="yesterday")),
        400,
        "pickup_datetime",
        ["pickup_datetime", "yesterday"],
        id="pickup-yesterday",
    ),
    pytest.param(_body(_trip(pickup_datetime=_DROP)), 400, "pickup_datetime", ["pickup_datetime"], id="pickup-missing"),
    pytest.param(_body(_trip(fare_amount=12.5)), 400, "fare_amount", ["fare_amount"], id="leaky-fare_amount"),
    pytest.param(
        _body(_trip(lpep_dropoff_datetime="2021-01-12T08:45:00")),
        400,
        "lpep_dropoff_datetime",
        ["lpep_dropoff_datetime"],
        id="leaky-dropoff",
    ),
    pytest.param(_body(_trip(PULocationID=True)), 400, "PULocationID", ["PULocationID"], id="bool-pu"),
    pytest.param(_body(_trip(passenger_count=False)), 400, "passenger_count", ["passenger_count"], id="bool-count"),
    pytest.param(_body(_trip(trip_distance=True)), 400, "trip_distance", ["trip_distance"], id="bool-distance"),
    pytest.param(_body([_trip()] * 10_001), 413, None, ["10000"], id="too-many-trips"),
    # Python's json module accepts NaN/Infinity (not JSON): they must still be a 4xx naming the field
    pytest.param(
        b'{"pickup_datetime": "2021-01-12T08:30:00", "PULocationID": NaN, "DOLocationID": 75, "trip_distance": 1.5}',
        400,
        "PULocationID",
        ["PULocationID"],
        id="pu-nan",
    ),
    pytest.param(
        _body(_trip(passenger_count=1e400)),  # json.dumps writes Infinity
        400,
        "passenger_count",
        ["passenger_count"],
        id="count-infinity",
    ),
    pytest.param(_body(_trip(trip_distance=float("nan"))), 400, "trip_distance", ["trip_distance"], id="distance-nan"),
    pytest.param(
        _body([_trip(), _trip(pickup_datetime="0001-01-01T00:00:00")]),
        400,
        "pickup_datetime",
        ["pickup_datetime"],
        id="pickup-year-1",
    ),
]


@pytest.mark.parametrize(("raw", "status", "field", "words"), BAD_INPUTS)
def test_malformed_input_is_refused_with_a_4xx_naming_the_problem(
    trained: Trained,
    registry: ModelRegistry,
    serve: Callable[[ModelRegistry], Client],
    raw: bytes,
    status: int,
    field: str | None,
    words: list[str],
) -> None:
    client = serve(registry)
    answer = client.call("POST", "/predict", raw=raw)
    assert answer.status == status, answer.body
    assert answer.body.get("field") == field, answer.body
    error = answer.body["error"]
    for word in words:
        assert word.lower() in error.lower(), error
    assert "predictions" not in answer.body
    assert client.health().status == 200
    # and the service still predicts
    assert client.predict(good_trip(trained)).status == 200


def test_good_trip_variants_are_accepted(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    """Integral floats, null optional codes and a date-only pickup are valid (so the refusals above are real)."""
    client = serve(registry)
    variants = [
        _trip(PULocationID=74.0),
        _trip(VendorID=None, RatecodeID=None, trip_type=None, passenger_count=None),
        _trip(VendorID=_DROP, RatecodeID=_DROP, trip_type=_DROP, passenger_count=_DROP),
        _trip(trip_distance=0),
    ]
    answer = client.predict(variants)
    assert len(durations(answer)) == len(variants)


def _raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes over a socket and parse the first HTTP answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(response.read())


def test_missing_content_length_is_411(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    body = _body(_trip())
    status, answer = _raw_exchange(
        client.port,
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\r\n" + body,
    )
    assert status == 411, answer
    assert "content-length" in answer["error"].lower()
    assert client.health().status == 200


def test_body_over_one_megabyte_is_413(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    # declared length over the limit: refused from the header, before the body is read
    status, answer = _raw_exchange(
        client.port,
        f"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        + b"[" * 1000,
    )
    assert status == 413, answer
    assert str(MAX_BODY_BYTES) in answer["error"]
    # a real body over 1 MB sent by an ordinary client
    padding = " " * (MAX_BODY_BYTES + 10)
    big = (json.dumps(good_trip(trained)) + padding).encode()
    assert len(big) > MAX_BODY_BYTES
    answer = client.call("POST", "/predict", raw=big)
    assert answer.status == 413, answer.body
    assert "limit" in answer.body["error"]
    assert client.health().status == 200
    assert client.predict(good_trip(trained)).status == 200


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("GET", "/nope", {404}),
        ("POST", "/nope", {404}),
        ("GET", "/predict", {404, 405}),
        ("POST", "/health", {404, 405}),
    ],
)
def test_unknown_endpoints_answer_json_errors(
    trained: Trained, registry: ModelRegistry, serve: Callable, method: str, path: str, statuses: set[int]
) -> None:
    client = serve(registry)
    body = good_trip(trained) if method == "POST" else None
    answer = client.call(method, path, body)
    assert answer.status in statuses, answer.body
    assert path in answer.body["error"] and "/predict" in answer.body["error"]
    assert client.health().status == 200


def test_refused_post_does_not_poison_a_keep_alive_connection(
    trained: Trained, registry: ModelRegistry, serve: Callable
) -> None:
    client = serve(registry)
    conn = client.connection()
    try:
        refused = client.call("POST", "/nope", good_trip(trained), conn=conn)
        assert refused.status == 404
        # an HTTP/1.1 client (requests.Session, http.client) reuses the connection for the next request
        again = client.call("GET", "/health", conn=conn)
        assert again.status == 200, again.body
    finally:
        conn.close()


def test_pickup_with_utc_offset_is_converted_or_refused(
    trained: Trained, registry: ModelRegistry, serve: Callable
) -> None:
    with registry.lock():
        registry.set_production("v0002", "a model that uses the pickup hour")
    client = serve(registry)
    local = client.predict(_trip(pickup_datetime="2021-01-12T08:30:00"))  # NYC time (EST, UTC-5), as trained
    assert local.body["model"]["version"] == "v0002"
    naive_utc_hour = client.predict(_trip(pickup_datetime="2021-01-12T13:30:00"))
    assert abs(durations(local)[0] - durations(naive_utc_hour)[0]) > 1e-3, "the hour must matter for this check"
    answer = client.predict(_trip(pickup_datetime="2021-01-12T13:30:00+00:00"))
    if answer.status == 400:
        assert answer.body["field"] == "pickup_datetime"
    else:
        np.testing.assert_allclose(durations(answer), durations(local), atol=1e-3)


# --------------------------------------------------------------------------- 3. hot swap under load
@pytest.mark.slow
def test_hot_swap_during_a_burst_fails_no_request(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    rows = trained.requests.iloc[[0, 4, 7]]
    trips = trips_of(rows)
    expected = {version: trained.models[version].predict(rows) for version in ("v0001", "v0002")}
    assert np.abs(expected["v0001"] - expected["v0002"]).max() > 0.01, "the two models must predict differently"

    per_thread, threads_n = 150, 4
    results: list[tuple[str, np.ndarray] | str] = []
    results_lock = threading.Lock()
    start = threading.Barrier(threads_n + 1)

    def worker() -> None:
        conn = client.connection()
        start.wait()
        for _ in range(per_thread):
            try:
                answer = client.predict(trips, conn=conn)
                if answer.status != 200:
                    outcome: tuple[str, np.ndarray] | str = f"HTTP {answer.status}: {answer.body}"
                else:
                    outcome = (answer.body["model"]["version"], durations(answer))
            except Exception as exc:  # a failed request, recorded rather than raised in the thread
                outcome = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = client.connection()
            with results_lock:
                results.append(outcome)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_n)]
    for t in threads:
        t.start()
    start.wait()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(results) < count:
            assert time.monotonic() < deadline, "the burst stalled"
            time.sleep(0.002)

    total = per_thread * threads_n
    wait_for(total // 4)
    with registry.lock():
        registry.set_production("v0002", "hot swap test")
    switched_at = len(results)
    wait_for(total * 2 // 3)
    registry.rollback("v0001", "hot swap test: back")
    rolled_back_at = len(results)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)

    failures = [r for r in results if isinstance(r, str)]
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:3]}"
    assert len(results) == total
    versions = [r[0] for r in results]
    assert set(versions) <= {"v0001", "v0002"}, set(versions)
    assert "v0002" in versions, f"v0002 never served (switched after {switched_at}, back after {rolled_back_at})"
    assert versions[: total // 4].count("v0002") == 0
    for version, got in results:  # type: ignore[misc]
        np.testing.assert_allclose(got, expected[version], atol=1e-3, err_msg=version)

    last = client.predict(trips)
    assert last.body["model"]["version"] == "v0001"
    np.testing.assert_allclose(durations(last), expected["v0001"], atol=1e-3)
    health = client.health()
    assert health.status == 200 and health.body["version"] == "v0001" and health.body["last_error"] is None


def test_swap_to_v0002_serves_v0002_predictions(trained: Trained, registry: ModelRegistry, serve: Callable) -> None:
    client = serve(registry)
    rows = trained.requests
    before = client.predict(trips_of(rows))
    assert before.body["model"]["version"] == "v0001"
    with registry.lock():
        registry.set_production("v0002", "swap")
    after = client.predict(trips_of(rows))
    assert after.body["model"]["version"] == "v0002"
    np.testing.assert_allclose(durations(after), trained.models["v0002"].predict(rows), atol=1e-3)
    info = client.call("GET", "/model").body
    assert info["version"] == "v0002" and info["algorithm"] == "ridge_a1"


# --------------------------------------------------------------------------- 4. tampered production model
def test_tampered_production_model_is_refused_and_the_previous_one_keeps_serving(
    trained: Trained, registry: ModelRegistry, serve: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded_paths: list[Path] = []
    real_load = registry_module.joblib.load

    def recording_load(path: Any, *args: Any, **kwargs: Any) -> Any:
        loaded_paths.append(Path(getattr(path, "name", path)))  # the registry unpickles verified bytes
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(registry_module.joblib, "load", recording_load)
    client = serve(registry)
    assert client.health().body["version"] == "v0001"

    tampered = registry.model_path("v0002")
    # a loadable pickle of another object: were it unpickled, the service would switch to it silently
    joblib.dump({"not": "the registered model"}, tampered)
    with registry.lock():
        registry.set_production("v0002", "points at a tampered file")

    trip = good_trip(trained)
    expected = trained.models["v0001"].predict(trained.requests.iloc[[0]])
    for _ in range(3):
        answer = client.predict(trip)
        assert answer.status == 200, answer.body
        assert answer.body["model"]["version"] == "v0001"
        np.testing.assert_allclose(durations(answer), expected, atol=1e-3)
    health = client.health()
    assert health.status == 200 and health.body["version"] == "v0001"
    assert health.body["last_error"] and "sha256" in health.body["last_error"], health.body
    assert client.call("GET", "/model").body["version"] == "v0001"
    assert tampered.resolve() not in [p.resolve() for p in loaded_paths], loaded_paths

    # a later good pointer is picked up and clears the error
    registry.rollback("v0001", "back to the good version")
    health = client.health()
    assert health.body["version"] == "v0001" and health.body["last_error"] is None
    assert tampered.resolve() not in [p.resolve() for p in loaded_paths]


# --------------------------------------------------------------------------- 5. no production model
def test_no_production_model_answers_503_without_crashing(
    trained: Trained, empty_registry: ModelRegistry, serve: Callable, tmp_path: Path
) -> None:
    client = serve(empty_registry)
    for _ in range(2):
        health = client.health()
        assert health.status == 503, health.body
        assert health.body["version"] is None and health.body["status"] != "ok"
        answer = client.predict(good_trip(trained))
        assert answer.status == 503, answer.body
        assert "production" in answer.body["error"] and "predictions" not in answer.body
        info = client.call("GET", "/model")
        assert info.status == 503 and "production" in info.body["error"]
    # invalid input is still refused for what it is
    assert client.call("POST", "/predict", raw=b"{").status == 400

    # once a model is registered and promoted, the running service picks it up without a restart
    model_file = tmp_path / "m.joblib"
    joblib.dump(trained.models["v0001"], model_file)
    version = empty_registry.register(
        model_file,
        {
            "metrics": {"test": {"rmse": 1.0}},
            "data": [{"role": "train", "month": "2021-01"}, {"role": "test", "month": "2021-03"}],
            "algorithm": {"candidate": "baseline_linreg"},
        },
    )
    with empty_registry.lock():
        empty_registry.set_production(version, "first model")
    answer = client.predict(good_trip(trained))
    assert answer.status == 200 and answer.body["model"]["version"] == version
    assert client.health().status == 200
