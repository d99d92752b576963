"""The prediction service: the production model over HTTP, with hot swap of the production pointer.

Standard library only (``http.server.ThreadingHTTPServer``): the API is three small JSON endpoints, so a web
framework would add a dependency without adding safety. Endpoints:

- ``POST /predict``: one trip (object) or a list of trips; answers ``{"predictions": [...], "model": {...}}``
- ``GET /health``: ``{"status": "ok", ...}`` (503 while no production model can be loaded)
- ``GET /model``: name, version, metrics, trained months of the serving model

Invalid input gets a 4xx answer naming the field and the problem; any unexpected error a 500 JSON answer,
never a crash. Before each request the service checks ``production.json`` (one ``stat``); when the pointer
changed it loads the new version (sha256 checked) and swaps it in. A request holds a reference to the model it
started with, so requests in flight finish on the old model and none fails during the swap. If the new
version cannot be loaded, the service keeps serving the previous one and reports the error in ``/health``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import urllib.parse
import zoneinfo
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from tripduration.features import MODEL_INPUT_COLUMNS
from tripduration.registry import ModelRegistry

log = logging.getLogger("tripduration.serving")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
MAX_BODY_BYTES = 1_000_000
MAX_TRIPS = 10_000
REQUIRED_FIELDS = ("pickup_datetime", "PULocationID", "DOLocationID", "trip_distance")
OPTIONAL_FIELDS = ("VendorID", "RatecodeID", "trip_type", "passenger_count")
_INT_RANGES = {
    "PULocationID": (1, 265),
    "DOLocationID": (1, 265),
    "VendorID": (0, 99),
    "RatecodeID": (0, 99),
    "trip_type": (0, 9),
    "passenger_count": (0, 20),
}


class InputError(ValueError):
    """A request the service refuses (answered with 4xx)."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None, status: int = 400):
        super().__init__(message)
        self.field, self.index, self.status = field, index, status

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "index": self.index}


def _int_field(trip: dict[str, Any], name: str, index: int, required: bool) -> int | None:
    value = trip.get(name)
    if value is None:
        if required:
            raise InputError(f"field {name!r} is required", field=name, index=index)
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or float(value) != int(value)
    ):
        raise InputError(f"field {name!r} must be an integer, got {value!r}", field=name, index=index)
    low, high = _INT_RANGES[name]
    if not low <= int(value) <= high:
        raise InputError(f"field {name!r} must be between {low} and {high}, got {value!r}", field=name, index=index)
    return int(value)


def parse_trips(payload: Any) -> pd.DataFrame:
    """Validate a JSON payload (one trip or a list) into a frame of canonical model inputs."""
    trips = payload if isinstance(payload, list) else [payload]
    if not trips:
        raise InputError("the request holds no trips; send one trip object or a non-empty list")
    if len(trips) > MAX_TRIPS:
        raise InputError(f"at most {MAX_TRIPS} trips per request, got {len(trips)}", status=413)
    rows = []
    allowed = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    for i, trip in enumerate(trips):
        if not isinstance(trip, dict):
            raise InputError(f"trip {i} must be a JSON object, got {type(trip).__name__}", index=i)
        unknown = sorted(set(trip) - allowed)
        if unknown:
            raise InputError(
                f"unknown or not-allowed fields {unknown}; a trip has {sorted(allowed)} (only what is known at "
                "dispatch)",
                field=unknown[0],
                index=i,
            )
        raw_time = trip.get("pickup_datetime")
        if not isinstance(raw_time, str):
            raise InputError(
                "field 'pickup_datetime' is required, as 'YYYY-MM-DDTHH:MM:SS'", field="pickup_datetime", index=i
            )
        try:
            pickup = dt.datetime.fromisoformat(raw_time)
        except ValueError:
            raise InputError(
                f"field 'pickup_datetime' is not an ISO date-time: {raw_time!r}", field="pickup_datetime", index=i
            ) from None
        if pickup.tzinfo is not None:  # TLC times are New York local time: convert, then drop the offset
            pickup = pickup.astimezone(NEW_YORK).replace(tzinfo=None)
        if not 2000 <= pickup.year <= 2100:
            raise InputError(
                f"field 'pickup_datetime' {raw_time!r} is outside the years 2000..2100",
                field="pickup_datetime",
                index=i,
            )
        distance = trip.get("trip_distance")
        if (
            isinstance(distance, bool)
            or not isinstance(distance, int | float)
            or not math.isfinite(distance)
            or not 0 <= float(distance) <= 100
        ):
            raise InputError(
                f"field 'trip_distance' must be a number of miles in 0..100, got {distance!r}",
                field="trip_distance",
                index=i,
            )
        row: dict[str, Any] = {"pickup_datetime": pickup, "trip_distance": float(distance)}
        for name in ("PULocationID", "DOLocationID"):
            row[name] = _int_field(trip, name, i, required=True)
        for name in OPTIONAL_FIELDS:
            row[name] = _int_field(trip, name, i, required=False)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(MODEL_INPUT_COLUMNS))
    frame["pickup_datetime"] = pd.to_datetime(frame["pickup_datetime"]).astype("datetime64[us]")
    for name in ("PULocationID", "DOLocationID"):
        frame[name] = frame[name].astype("int32")
    for name in OPTIONAL_FIELDS:
        frame[name] = frame[name].astype("Int32")
    return frame


@dataclass(frozen=True)
class Loaded:
    model: Any
    metadata: dict[str, Any]
    signature: tuple[int, int, int]


class ModelHolder:
    """Holds the serving model and swaps it when ``production.json`` changes."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self.current: Loaded | None = None
        self.last_error: str | None = None

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.registry.production_file)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def get(self) -> Loaded | None:
        signature = self._signature()
        current = self.current
        if signature is None or (current is not None and current.signature == signature):
            return current
        with self._lock:  # one thread loads; the others keep using the current model meanwhile
            current = self.current
            if current is not None and current.signature == signature:
                return current
            try:
                model, meta = self.registry.load_model()
                self.current = Loaded(model, meta, signature)
                self.last_error = None
                log.info("serving %s %s", self.registry.name, meta.get("version"))
            except Exception as exc:  # keep the previous model; tell /health
                self.last_error = f"cannot load the new production model: {exc}"
                log.error(self.last_error)
                if current is not None:
                    # remember the bad signature so we do not retry on every request
                    self.current = Loaded(current.model, current.metadata, signature)
            return self.current


def model_info(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": meta.get("name"),
        "version": meta.get("version"),
        "algorithm": meta.get("algorithm", {}).get("candidate"),
        "metrics": meta.get("metrics", {}),
        "trained_months": [d["month"] for d in meta.get("data", []) if d.get("role") in ("train", "validation")],
        "test_month": next((d["month"] for d in meta.get("data", []) if d.get("role") == "test"), None),
        "registered_at": meta.get("registered_at"),
        "model_sha256": meta.get("model_sha256"),
    }


def make_handler(holder: ModelHolder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "trip-duration/1"
        protocol_version = "HTTP/1.1"
        timeout = 30  # seconds; a client that stalls mid-request does not hold a thread forever

        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: dict[str, Any], close: bool = False) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:  # the request body may be unread: the connection cannot carry another request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def _guarded(self, action: Any) -> None:
            try:
                action()
            except InputError as exc:
                self._send(exc.status, exc.as_dict(), close=True)
            except Exception as exc:  # never crash the service on a request
                log.exception("request failed")
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(exc).__name__}"}, close=True
                )

        def do_GET(self) -> None:
            self._guarded(self._get)

        def do_POST(self) -> None:
            self._guarded(self._post)

        def _discard_body(self, length: int) -> None:
            """Read and drop a refused body (up to 16 MB, 1 s of silence at most) so that the client, still
            sending, can read the answer instead of getting a broken pipe; the connection is closed after."""
            self.connection.settimeout(1.0)
            remaining = min(length, 16 * MAX_BODY_BYTES)
            try:
                while remaining > 0 and (chunk := self.rfile.read1(min(remaining, 1 << 16))):
                    remaining -= len(chunk)
            except OSError:
                pass

        def _route(self) -> str:
            return urllib.parse.urlsplit(self.path).path

        def _get(self) -> None:
            loaded = holder.get()
            if self._route() == "/health":
                status = HTTPStatus.OK if loaded else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(
                    status,
                    {
                        "status": "ok" if loaded else "no production model",
                        "version": loaded.metadata.get("version") if loaded else None,
                        "last_error": holder.last_error,
                    },
                )
            elif self._route() == "/model":
                if loaded is None:
                    raise InputError("no production model is registered yet", status=503)
                self._send(HTTPStatus.OK, model_info(loaded.metadata))
            else:
                raise InputError(
                    f"no such endpoint {self.path!r}; use GET /health, GET /model, POST /predict", status=404
                )

        def _post(self) -> None:
            if self._route() != "/predict":
                raise InputError(f"no such endpoint {self.path!r}; use POST /predict", status=404)
            length_header = self.headers.get("Content-Length")
            if length_header is None or not length_header.isdigit():
                raise InputError("a Content-Length header is required", status=411)
            length = int(length_header)
            if length > MAX_BODY_BYTES:
                self._discard_body(length)
                raise InputError(f"body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit", status=413)
            body = self.rfile.read(length)
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"body is not valid JSON: {exc}") from None
            frame = parse_trips(payload)
            loaded = holder.get()
            if loaded is None:
                raise InputError("no production model is registered yet", status=503)
            minutes = loaded.model.predict(frame)
            self._send(
                HTTPStatus.OK,
                {
                    "predictions": [{"duration_min": round(float(m), 3)} for m in minutes],
                    "model": {"name": loaded.metadata.get("name"), "version": loaded.metadata.get("version")},
                },
            )

    return Handler


def make_server(registry: ModelRegistry, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    holder = ModelHolder(registry)
    holder.get()
    server = ThreadingHTTPServer((host, port), make_handler(holder))
    server.daemon_threads = True
    server.holder = holder  # type: ignore[attr-defined]
    return server
