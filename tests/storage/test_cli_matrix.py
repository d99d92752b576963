"""Every command that needs no training run, as a real process, on a local folder and on a moto S3 bucket.

The registry is registered through the storage port beforehand (two small real models fitted on a sampled
month: v0001 the course baseline, in production; v0002 a ridge), so these run in the fast suite: ``models``,
``rollback``, ``status``, ``invalidate`` and ``serve`` with 1 and 2 worker processes (the hot swap after a
``rollback`` seen by every worker). The commands that train are in test_cli_matrix_jobs.py (slow).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import pytest

from tasks.base import INVALIDATIONS
from tests.conftest import free_port
from tests.events import kinds
from tests.storage.cli_matrix import KINDS, MODEL, Backend, explain, make_backend
from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy

TRIP = {"pickup_datetime": "2021-01-05T08:30:00", "PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}


@dataclass
class Fitted:
    files: dict[str, Path]  # candidate -> model file


@pytest.fixture(scope="session")
def fitted(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    kept, _, _ = validate_trip_file(sample_raw_dir / "green_tripdata_2021-01.parquet", dt.date(2021, 1, 1), Rules())
    X, y = split_xy(model_table(kept))
    folder = tmp_path_factory.mktemp("matrix-models")
    files = {}
    for candidate in ("baseline_linreg", "ridge_a1"):
        files[candidate] = folder / f"{candidate}.joblib"
        joblib.dump(build_pipeline(CANDIDATES[candidate]).fit(X, y), files[candidate])
    return Fitted(files)


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, sample_raw_dir: Path) -> Backend:
    endpoint = request.getfixturevalue("moto_server").endpoint_url if request.param == "s3" else None
    return make_backend(request.param, tmp_path / request.param, sample_raw_dir, endpoint)


@pytest.fixture
def registered(backend: Backend, fitted: Fitted) -> Backend:
    """v0001 (baseline, passed the gate, production) and v0002 (ridge, passed the gate), through the port."""
    registry = backend.registry()
    for candidate, rmse in (("baseline_linreg", 6.0), ("ridge_a1", 5.5)):
        metadata = {
            "metrics": {"test": {"rmse": rmse}, "baseline_test": {"rmse": 6.0}},
            "data": [{"role": "train", "month": "2021-01"}, {"role": "test", "month": "2021-03"}],
            "algorithm": {"candidate": candidate},
            "gate": {"promote": True, "reason": "test"},
        }
        registry.register(fitted.files[candidate], metadata)
    with registry.lock():
        registry.set_production("v0001", "no production model yet")
    return backend


# --------------------------------------------------------------------------- models, rollback
def test_models_lists_the_versions_and_their_status(registered: Backend) -> None:
    done = registered.cli("models", "--json")
    assert done.returncode == 0, explain(done)
    listing = json.loads(done.stdout)
    assert listing["problems"] == []
    assert [(r["version"], r["status"], r["algorithm"]) for r in listing["versions"]] == [
        ("v0001", "production", "baseline_linreg"),
        ("v0002", "challenger", "ridge_a1"),
    ]
    table = registered.cli("models")
    assert table.returncode == 0 and "v0002    challenger  ridge_a1" in table.stdout, explain(table)


def test_rollback_moves_the_pointer_and_logs_it_once(registered: Backend) -> None:
    done = registered.cli("rollback", "v0002", "--reason", "drill")
    assert done.returncode == 0, explain(done)
    assert "production is now v0002 (was v0001): drill" in done.stdout
    registry = registered.registry()
    pointer = registry.production()
    assert pointer is not None and (pointer["version"], pointer["action"], pointer["reason"]) == (
        "v0002",
        "rollback",
        "drill",
    )
    assert kinds(registry) == ["promoted", "rolled back"]
    again = registered.cli("rollback", "v0002")
    assert again.returncode == 0 and "already in production" in again.stdout, explain(again)
    unknown = registered.cli("rollback", "v0007")
    assert unknown.returncode == 2 and "v0007 is not a registered version" in unknown.stderr, explain(unknown)
    assert kinds(registry) == ["promoted", "rolled back"]  # neither recorded anything


# --------------------------------------------------------------------------- status, invalidate
def test_status_names_earlier_outputs_and_invalidate_marks_accumulate(registered: Backend) -> None:
    work = registered.work()
    # an output of ValidatedTrips 2021-01 under another fingerprint (as after a change of its rules)
    work.write_bytes("ValidatedTrips/green_2021-01-0123456789ab/summary.json", b"{}")
    done = registered.cli("status")
    assert done.returncode == 0, explain(done)
    lines = {line.split()[1].rsplit("_", 1)[0]: line for line in done.stdout.splitlines()[1:-1]}
    earlier = work.url_for("ValidatedTrips/green_2021-01-0123456789ab")
    assert (
        f"changed fingerprint (inputs, configuration or code changed); earlier outputs: {earlier}"
        in lines["ValidatedTrips_green_2021_01"]
    )
    assert "no output yet" in lines["ValidatedTrips_green_2021_02"]
    assert "task(s) would run" in done.stdout.splitlines()[-1]

    for month in ("2021-02", "2021-03"):
        marked = registered.cli("invalidate", "ValidatedTrips", "--month", month)
        assert marked.returncode == 0 and "invalidated ValidatedTrips_green_2021_0" in marked.stdout, explain(marked)
    marks = json.loads(work.read_bytes(INVALIDATIONS))
    # in .invalidated.json of the work storage (a local file, an object in the bucket): the second kept the first
    assert sorted(key.rsplit("_", 1)[0] for key in marks) == [
        "ValidatedTrips_green_2021_02",
        "ValidatedTrips_green_2021_03",
    ]

    again = registered.cli("status")
    assert again.returncode == 0, explain(again)
    invalidated = [line for line in again.stdout.splitlines() if "invalidated (pipeline.py invalidate)" in line]
    assert [line.split()[1].rsplit("_", 1)[0] for line in invalidated] == [
        "ValidatedTrips_green_2021_02",
        "ValidatedTrips_green_2021_03",
    ]


# --------------------------------------------------------------------------- serve
@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)  # a new connection each time
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 60) -> tuple[int, dict]:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            assert code is None, f"serve exited {code}: {self.log.read_text()[-3000:]}"
            try:
                return self.call("GET", "/health")
            except OSError:
                assert time.monotonic() < deadline, f"serve did not answer: {self.log.read_text()[-3000:]}"
                time.sleep(0.2)


@pytest.fixture
def serve(registered: Backend) -> Iterator:
    started: list[Service] = []

    def start(*args: str) -> Service:
        port = free_port()
        log = registered.home / f"serve-{port}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                registered.command("serve", "--port", str(port), *args),
                env=registered.env(),
                cwd=registered.home,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(Service(process, port, log))
        return started[-1]

    yield start
    for service in started:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=10)


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_serve_answers_from_the_registry_and_swaps_after_a_rollback(registered: Backend, serve, workers: int) -> None:
    service = serve("--workers", str(workers))
    status, health = service.wait_ready()
    assert (status, health["status"], health["version"], health["last_error"]) == (200, "ok", "v0001", None), health
    status, answer = service.call("POST", "/predict", TRIP)
    assert status == 200 and answer["model"] == {"name": MODEL, "version": "v0001"}, answer
    first = answer["predictions"][0]["duration_min"]

    done = registered.cli("rollback", "v0002", "--reason", "hot swap")
    assert done.returncode == 0, explain(done)
    # each worker looks at the pointer at most every poll_seconds (1 s on S3): after that, every request of
    # every worker process is answered by v0002
    time.sleep(registered.registry().storage.poll_seconds + 0.5)
    versions = set()
    for _ in range(4 * workers):
        status, answer = service.call("POST", "/predict", TRIP)
        assert status == 200, answer
        versions.add(answer["model"]["version"])
        assert answer["predictions"][0]["duration_min"] != first
    assert versions == {"v0002"}
    status, health = service.call("GET", "/health")
    assert (status, health["version"], health["last_error"]) == (200, "v0002", None), health

    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0, service.log.read_text()[-3000:]
