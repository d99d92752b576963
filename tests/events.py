"""The registry's event log as tests read it."""

from __future__ import annotations

from typing import Any

from tripduration.registry.store import ModelRegistry

LOOP_STEPS = ("monitored", "not monitored", "deferred", "resumed", "retrained")


def loop_events(registry: ModelRegistry, month: str | None = None) -> list[dict[str, Any]]:
    """The monthly loop's steps in the event log (promotions and rejections aside), optionally of one month."""
    found = [e for e in registry.events()[0] if e["event"] in LOOP_STEPS]
    return [e for e in found if month is None or e.get("month") == month]


def kinds(registry: ModelRegistry) -> list[str]:
    return [e["event"] for e in registry.events()[0]]
