"""The service benchmark's load generator: asyncio on raw sockets, cheap in CPU (benchmarks/service_bench.py).

Requests are pre-built bytes; an answer is read as a head up to the blank line, then ``Content-Length``
bytes. A :class:`Connection` is kept alive and, like an HTTP client's pool, reopened once when the server
closed it while idle. Every exchange has a time limit, so a stuck service is an error, not a hang.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

REQUEST_TIMEOUT = 120.0  # seconds: a service that takes longer to answer one request is reported as failing


def post(body: bytes) -> bytes:
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    at = head.lower().find(b"content-length:")
    if at < 0:
        raise RuntimeError(f"an answer without Content-Length: {head[:300]!r}")
    length = int(head[at + 15 : head.find(b"\r\n", at)])
    return status, await reader.readexactly(length)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def single_trips(port: int, requests: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` keep-alive connections, each sending one trip at a time for ``seconds`` (at least one each:
    a service slower than the window still gets measured)."""
    latencies: list[float] = []
    failures: list[str] = []
    reconnects: list[int] = []
    warm = asyncio.Barrier(clients + 1)
    go = asyncio.Event()
    stop_at = [0.0]

    async def client(k: int) -> None:
        connection = Connection(port)
        await connection.send(requests[k])  # connected and warm before the clock starts
        await warm.wait()
        await go.wait()
        i = k
        while True:
            began = time.perf_counter()
            status, body = await connection.send(requests[i % len(requests)])
            latencies.append(time.perf_counter() - began)
            if status != 200:
                failures.append(f"HTTP {status}: {body[:200]!r}")
            i += clients
            if time.perf_counter() >= stop_at[0]:
                break
        connection.close()
        reconnects.append(connection.reconnects)

    tasks = [asyncio.create_task(client(k)) for k in range(clients)]
    await warm.wait()
    cpu, began = time.process_time(), time.perf_counter()
    stop_at[0] = began + seconds
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, e.g. {failures[0]}")
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": len(latencies),
        "generator_cpu": (time.process_time() - cpu) / elapsed,
        "reconnects": sum(reconnects),
    }


class Connection:
    """A keep-alive connection that, like an HTTP client's pool, reconnects once when the server has closed it
    while it was idle (a keep-alive timeout) and sends the request again."""

    def __init__(self, port: int) -> None:
        self.port, self.reconnects = port, 0
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.streams is None:
                self.streams = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                return await timed(exchange(*self.streams, request))
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2 or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def timed(exchanged: Any, seconds: float = REQUEST_TIMEOUT) -> tuple[int, bytes]:
    """One exchange, or an error naming the timeout (a stuck service must not hang the benchmark)."""
    try:
        return await asyncio.wait_for(exchanged, seconds)
    except TimeoutError:
        raise RuntimeError(f"no answer within {seconds:g} s") from None


async def batches(port: int, request: bytes, count: int, max_seconds: float) -> dict[str, float]:
    """``count`` 1,000-trip requests one after another (fewer if ``max_seconds`` pass first)."""
    connection = Connection(port)
    await connection.send(request)  # warm
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < count and (len(times) < 5 or time.perf_counter() < deadline):
        began = time.perf_counter()
        status, body = await connection.send(request)
        times.append(time.perf_counter() - began)
        if status != 200:
            raise RuntimeError(f"batch: HTTP {status}: {body[:200]!r}")
    connection.close()
    return {"batch_p50_ms": percentile(times, 50) * 1000, "batch_p99_ms": percentile(times, 99) * 1000}
