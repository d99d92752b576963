"""MLflow stores for the tests: an empty sqlite store made once (its ~60 schema migrations take seconds), copies of
it per test, and a real ``mlflow server`` on a free 127.0.0.1 port (stopped, with its process group, at the end)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import free_port


def client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def make_empty_store(folder: Path) -> Path:
    """An empty, migrated MLflow sqlite database in ``folder``."""
    db = folder / "mlflow.db"
    client_for(f"sqlite:///{db}").search_experiments()
    return db


def store_copy(empty: Path, folder: Path) -> str:
    """A fresh store (a copy of ``empty``) in ``folder``; its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@contextlib.contextmanager
def mlflow_server(home: Path, empty: Path) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite backend, proxied artifacts in ``home``) on 127.0.0.1; its URL."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty, home / "mlflow.db")  # already migrated: the server starts seconds sooner
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed after the process ends
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
        *("--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"),
        *("--artifacts-destination", str(home / "artifacts"), "--workers", "1"),
    ]
    process = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, 15)
        try:  # uvicorn waits for idle keep-alive connections of the test's clients: do not wait long
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)
        log.close()
