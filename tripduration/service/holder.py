"""The serving model and its hot swap when ``production.json`` changes.

Before each request the service checks ``production.json`` (one ``stat``); when the pointer changed it loads
the new version through :meth:`ModelRegistry.load_model` (which checks the sha256 before unpickling) and swaps
it in. A request holds a reference to the model it started with, so requests in flight finish on the old model
and none fails during the swap. If the new version cannot be loaded, the service keeps serving the previous one
and reports the error in ``/health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tripduration.registry.store import ModelRegistry

log = logging.getLogger("tripduration.service")


@dataclass(frozen=True)
class Loaded:
    model: Any
    metadata: dict[str, Any]
    signature: str


def _ignore(_: Any) -> None:
    return None


class ModelHolder:
    """Holds the serving model and swaps it when ``production.json`` changes.

    ``on_loaded(metadata)`` and ``on_failed(message)`` are told about each swap and each refused version (the
    metrics use them; the holder itself knows nothing of Prometheus)."""

    def __init__(
        self,
        registry: ModelRegistry,
        on_loaded: Callable[[dict[str, Any]], None] = _ignore,
        on_failed: Callable[[str], None] = _ignore,
    ) -> None:
        self.registry = registry
        self.on_loaded, self.on_failed = on_loaded, on_failed
        self._lock = threading.Lock()
        self.current: Loaded | None = None
        self._polled: tuple[float, str | None] | None = None
        self.last_error: str | None = None

    def _signature(self) -> str | None:
        """The pointer's change token (a stat on disk; a HEAD on object storage, at most every
        ``poll_seconds``: not one round trip per request)."""
        interval = self.registry.storage.poll_seconds
        now = time.monotonic()
        if interval and self._polled is not None and now - self._polled[0] < interval:
            return self._polled[1]
        token = self.registry.production_token()
        self._polled = (now, token)
        return token

    def get(self) -> Loaded | None:
        signature = self._signature()
        current = self.current
        if signature is None or (current is not None and current.signature == signature):
            return current
        with self._lock:  # one thread loads; the others keep using the current model meanwhile
            current = self.current
            if current is not None and current.signature == signature:
                return current
            self._load(current, signature)
            return self.current

    def _load(self, current: Loaded | None, signature: str) -> None:
        try:
            model, meta = self.registry.load_model()
        except Exception as exc:  # keep the previous model; tell /health
            self.last_error = f"cannot load the new production model: {exc}"
            log.error(self.last_error)
            self.on_failed(self.last_error)
            if current is not None:
                # remember the bad signature so we do not retry on every request
                self.current = Loaded(current.model, current.metadata, signature)
            return
        self.current = Loaded(model, meta, signature)
        self.last_error = None
        log.info("serving %s %s", self.registry.name, meta.get("version"))
        self.on_loaded(meta)


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
