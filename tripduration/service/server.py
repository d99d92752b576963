"""Run the service under uvicorn: one process, or ``--workers N`` processes sharing one listening socket.

What holds a request to account (the connection-level ones are :mod:`tripduration.service.protocol`'s):
- ``limit_concurrency``: when this many requests are in progress, the new one included, it gets 503 at
  once (a connection that has not sent a request holds no slot);
- ``backlog``: connections the kernel queues before ``accept``;
- ``keep_alive``: a connection idle this many seconds, before its first request or between two, is closed;
- ``header_timeout``: a request head not complete this many seconds after its first byte gets 408;
- the body deadline of :class:`~tripduration.service.guards.RequestGuard` (408) and its size limit (413);
- on SIGTERM or SIGINT the server stops accepting, lets the requests in flight finish (at most
  ``graceful_timeout`` seconds) and exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from tripduration.registry.store import ModelRegistry
from tripduration.service.protocol import HEADER_TIMEOUT_ATTR, GuardedH11Protocol

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    limit_concurrency: int = 64
    backlog: int = 128
    keep_alive: float = 5.0
    body_timeout: float = 10.0
    header_timeout: float = 10.0
    graceful_timeout: float = 30.0


def uvicorn_config(app: Any, options: ServeOptions, **extra: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        workers=options.workers,
        http=GuardedH11Protocol,
        lifespan="on",
        limit_concurrency=options.limit_concurrency,
        backlog=options.backlog,
        timeout_keep_alive=int(options.keep_alive),
        timeout_graceful_shutdown=int(options.graceful_timeout),
        # a worker imports pandas and scikit-learn before it answers the supervisor's ping: on a busy machine
        # that takes longer than uvicorn's 5 s default, and the supervisor would kill it as hung, again and again
        timeout_worker_healthcheck=60,
        access_log=False,
        server_header=False,
        log_level="info",
        **extra,
    )
    setattr(config, HEADER_TIMEOUT_ATTR, options.header_timeout)
    return config


@contextmanager
def _quiet_exit_signals() -> Iterator[None]:
    """uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut down; with the default handlers that
    would end the process by the signal (exit -15) or a KeyboardInterrupt. Handlers that do nothing let
    ``serve`` return 0 after the graceful shutdown."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _multiprocess_metrics_dir() -> Iterator[str]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers (set before any of them imports prometheus_client)."""
    folder = tempfile.mkdtemp(prefix="tripduration-metrics-")
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before


def serve(registry: ModelRegistry, options: ServeOptions, announce: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a graceful shutdown, 1 if it never started)."""
    with _quiet_exit_signals():
        if options.workers > 1:
            return _serve_workers(registry, options, announce)
        return _serve_single(registry, options, announce)


def _banner(registry: ModelRegistry, host: str, port: int, workers: int) -> str:
    return (
        f"serving {registry.name} on http://{host}:{port} with {workers} worker(s) "
        "(POST /predict, GET /health, GET /model, GET /metrics, docs at /docs)"
    )


def _serve_single(registry: ModelRegistry, options: ServeOptions, announce: Callable[[str], None]) -> int:
    from tripduration.service.app import create_app

    config = uvicorn_config(create_app(registry, body_timeout=options.body_timeout), options)
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    announce(_banner(registry, options.host, sock.getsockname()[1], 1))
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _serve_workers(registry: ModelRegistry, options: ServeOptions, announce: Callable[[str], None]) -> int:
    from tripduration.service import app as app_module

    os.environ[app_module.ENV_REGISTRY] = json.dumps(registry.base.spec())
    os.environ[app_module.ENV_NAME] = registry.name
    os.environ[app_module.ENV_BODY_TIMEOUT] = str(options.body_timeout)
    with _multiprocess_metrics_dir() as folder:
        config = uvicorn_config("tripduration.service.app:app_from_env", options, factory=True)
        sock = config.bind_socket()
        announce(_banner(registry, options.host, sock.getsockname()[1], options.workers))
        announce(f"/metrics adds up the workers' values kept in {folder} (removed at exit)")
        Multiprocess(config, sockets=[sock]).run()
    return 0
