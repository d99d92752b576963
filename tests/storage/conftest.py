"""A real S3 HTTP API on 127.0.0.1 (moto in server mode) for the storage tests, and a bucket per test.

- ``moto_server`` (session): one ``ThreadedMotoServer`` on a free 127.0.0.1 port, stopped at the end.
  Every request is served under one lock (:class:`AtomicMotoServer`): moto checks ``If-None-Match`` /
  ``If-Match`` and then stores the object in two steps without a lock, so two concurrent conditional PUTs
  can both pass the check (measured with moto 5.2.5: 2 of 100 rounds of 8 racing create-only PUTs had two
  winners with ``sys.setswitchinterval(1e-6)``). AWS S3 and MinIO evaluate the condition and the write
  atomically; serialising requests makes the test server behave like them, so the race tests test our
  code, not moto's.
- ``s3_env`` (function): a fresh bucket, the endpoint and credentials in the standard AWS environment
  variables (boto3 and the storage module read them) AND in luigi's ``[s3]`` section (what
  ``luigi.contrib.s3.S3Client`` passes to boto3); ``~/.aws`` and the instance-metadata lookup are disabled.
- ``store`` (function, parametrised ``local`` / ``s3``): the same tests run against both storages.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from tripduration.io.local import LocalStorage
from tripduration.io.s3 import S3Storage, make_s3_client
from tripduration.io.storage import Storage

ACCESS_KEY = "storage-tests"
SECRET_KEY = "storage-tests-secret"
REGION = "us-east-1"
_bucket_numbers = itertools.count(1)


class _OneRequestAtATime:
    """WSGI middleware: serve one request at a time (each S3 request atomic, as on a real S3 server)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        with self.lock:
            return list(self.app(environ, start_response))


class AtomicMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` whose requests are each atomic (see the module docstring for why)."""

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class MotoServer:
    endpoint_url: str


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@dataclass
class S3Env:
    endpoint_url: str
    bucket: str

    def url(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    def client(self) -> Any:
        return make_s3_client()


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@pytest.fixture
def s3_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, config: Any) -> S3Env:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": moto_server.endpoint_url}.items():
        monkeypatch.setenv(name, value)
    config.set("s3", "endpoint_url", moto_server.endpoint_url)
    config.set("s3", "aws_access_key_id", ACCESS_KEY)
    config.set("s3", "aws_secret_access_key", SECRET_KEY)
    config.set("s3", "region_name", REGION)
    env = S3Env(endpoint_url=moto_server.endpoint_url, bucket=f"storage-test-{next(_bucket_numbers):04d}")
    env.client().create_bucket(Bucket=env.bucket)
    return env


@pytest.fixture(params=["local", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    """The storage under test: a temporary folder, or a prefix in a fresh moto bucket."""
    if store_kind == "local":
        return LocalStorage(tmp_path / "store")
    s3: S3Env = request.getfixturevalue("s3_env")
    return S3Storage(s3.url("some/prefix"))
