"""Limits that hold before the application sees a request: body size, body read time, malformed HTTP.

:class:`RequestGuard` is a plain ASGI middleware (no per-request task or thread): it reads the body of a POST
itself, under a total deadline (a client trickling one byte every 5 s is cut off when the deadline passes, not
after 5 s of silence) and a size limit, and hands the application the complete body. It also measures every
request for the metrics, refusals included.

The connection-level guards (idle and head timeouts, the request limit, JSON for unparseable HTTP) are in
:mod:`tripduration.service.protocol`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tripduration.service.metrics import Metrics
from tripduration.service.schemas import InputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_FACTOR = 16  # a refused body is read and dropped up to 16 x the limit, so the client can read the answer
DRAIN_SILENCE = 1.0  # seconds without a byte after which a refused body is no longer waited for


class ClientGoneError(Exception):
    """The client disconnected while sending its body: nobody is left to answer."""


def json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, default=str).encode()


async def send_json(send: Send, status: int, body: dict[str, Any], *, close: bool = False) -> None:
    data = json_bytes(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:  # the request body may be unread: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length as an int; None when the body is chunked. 411/400 when absent or not ASCII digits
    (h11 refuses those already; this holds for any other ASGI server too)."""
    headers = dict(scope["headers"])
    raw = headers.get(b"content-length")
    if raw is None:
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return None
        raise InputError("a Content-Length header is required", field="Content-Length", status=411)
    if not (raw.isdigit() and raw.isascii() and len(raw) <= 20):
        raise InputError(f"Content-Length must be ASCII digits, got {raw[:40]!r}", field="Content-Length")
    return int(raw)


class RequestGuard:
    """Read a POST body under a size limit and a total deadline; measure every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, max_body: int, body_timeout: float) -> None:
        self.app, self.metrics = app, metrics
        self.max_body, self.body_timeout = max_body, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def measured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, measured_send)
        except ClientGoneError:
            status[0] = 499  # nginx's code for "client closed the request"
        finally:
            self.metrics.observe(scope["path"], scope["method"], status[0], time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
        except InputError as exc:
            await send_json(send, exc.status, exc.as_dict(), close=True)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body:
            await self._drain(receive, declared)
            raise InputError(f"body of {declared} bytes is over the {self.max_body}-byte limit", status=413)
        deadline = time.monotonic() + self.body_timeout
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await self._receive_before(receive, deadline, size, declared)
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_body:
                await self._drain(receive, DRAIN_FACTOR * self.max_body)
                raise InputError(f"body over the {self.max_body}-byte limit", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _receive_before(self, receive: Receive, deadline: float, size: int, declared: int | None) -> Message:
        try:
            message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            expected = f"of {declared} " if declared is not None else ""
            raise InputError(
                f"the body {expected}bytes was not received within {self.body_timeout:g} s (got {size} bytes); "
                "send the whole body at once",
                status=408,
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        return message

    async def _drain(self, receive: Receive, limit: int) -> None:
        """Read and drop a refused body (up to ``limit`` bytes, :data:`DRAIN_SILENCE` s of silence at most) so
        that the client, still sending, can read the answer instead of getting a connection reset."""
        drained, more = 0, True
        while more and drained < min(limit, DRAIN_FACTOR * self.max_body):
            try:
                message = await asyncio.wait_for(receive(), DRAIN_SILENCE)
            except TimeoutError:
                return
            if message["type"] == "http.disconnect":
                raise ClientGoneError
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the application the body already read, then waits on the real one (for a
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
