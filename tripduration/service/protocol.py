"""uvicorn's h11 protocol with the connection-level guards the service needs.

- **No Nagle delay.** uvicorn's own listening socket (``Config.bind_socket``, used by ``pipeline.py serve``
  and by ``--workers``) has ``proto`` 0, so asyncio does not set ``TCP_NODELAY`` on the connections it
  accepts (uvicorn issue 3149): an answer written as two segments (head, then body) then waits for the
  client's delayed ACK, ~40 ms on Linux, on every keep-alive request after the first. Every accepted TCP
  connection gets ``TCP_NODELAY`` here.
- **Idle and head timeouts.** A connection that has not started a request is closed after the keep-alive
  time (uvicorn only times a connection out after a first answer); a request head still incomplete
  ``header_timeout`` seconds after its first byte gets 408 and the connection is closed (a slow-loris client
  sending a header byte every few seconds holds nothing for long).
- **The concurrency limit counts requests, not connections.** uvicorn refuses a request with 503 when the
  number of *open connections* reaches ``limit_concurrency``: 64 idle connections were enough to make
  ``/health`` answer 503. Here a request is refused (503, JSON) when the requests in progress, itself
  included, reach the limit; a connection that sends nothing holds no slot.
- **JSON for unparseable HTTP.** A request h11 cannot parse (a Content-Length of non-ASCII digits, or of
  5,000 digits) is answered with our JSON error shape naming the header, instead of uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tripduration.service.guards import Receive, Scope, Send, json_bytes, send_json

#: uvicorn.Config attribute carrying the head timeout (the config reaches each worker process whole)
HEADER_TIMEOUT_ATTR = "tripduration_header_timeout"
DEFAULT_HEADER_TIMEOUT = 10.0


def _json_answer(status: int, reason: bytes, error: str) -> bytes:
    data = json_bytes({"error": error, "field": None, "index": None})
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
        status,
        reason,
        len(data),
    )
    return head + data


class GuardedH11Protocol(H11Protocol):
    """See the module docstring."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.request_limit: int | None = self.limit_concurrency
        self.limit_concurrency = None  # uvicorn's check counts idle connections: ours is in _limited
        self._app = self.app
        if self.request_limit is not None:
            self.app = self._limited
        self.header_timeout = float(getattr(config, HEADER_TIMEOUT_ATTR, DEFAULT_HEADER_TIMEOUT))
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = "idle"

    # ------------------------------------------------------------------ connections
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm(self.timeout_keep_alive, self._idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._disarm()
        elif self._timer is None or self._timer_kind != "head":  # first bytes of a head that is not complete
            self._arm(self.header_timeout, self._head_expired, "head")

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # ------------------------------------------------------------------ timers
    def _arm(self, seconds: float, callback: Any, kind: str = "idle") -> None:
        self._disarm()
        self._timer, self._timer_kind = self.loop.call_later(seconds, callback), kind

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_expired(self) -> None:
        self._timer = None
        if not self._in_request() and not self.transport.is_closing():
            self.transport.close()

    def _head_expired(self) -> None:
        self._timer = None
        if self._in_request() or self.transport.is_closing():
            return
        self.transport.write(
            _json_answer(
                408,
                b"Request Timeout",
                f"the request head was not received within {self.header_timeout:g} s; send the request line and "
                "headers at once",
            )
        )
        self.transport.close()

    # ------------------------------------------------------------------ the request limit
    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application, unless the requests in progress (this one included) reach the limit."""
        if scope["type"] == "http" and len(self.tasks) >= (self.request_limit or 0):
            await send_json(
                send,
                503,
                {
                    "error": f"{len(self.tasks)} requests in progress, at the limit of {self.request_limit} "
                    "(serve --limit-concurrency); retry shortly",
                    "field": None,
                    "index": None,
                },
                close=True,
            )
            return
        await self._app(scope, receive, send)

    # ------------------------------------------------------------------ unparseable HTTP
    def send_400_response(self, msg: str) -> None:
        exc = sys.exc_info()[1]  # uvicorn calls this inside ``except h11.RemoteProtocolError``
        detail = str(exc) if exc is not None else msg
        field = "Content-Length" if "content-length" in detail.lower() else None
        data = json_bytes({"error": f"malformed HTTP request: {detail}", "field": field, "index": None})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=data)):
            self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()
