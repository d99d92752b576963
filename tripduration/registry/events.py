"""The registry's event log: what happened to a model name, append-only, in one sequence.

``<registry>/<name>/events.jsonl`` (one create-only object per event on object storage) holds every production
pointer change (``promoted``, ``rolled back``: written by the registry itself right after it swaps the pointer)
and every step of the monthly loop (``monitored``, ``not monitored``, ``deferred``, ``resumed``,
``retrained``, ``rejected``). Each event has a sequence number (``seq``), a time, and the production version
before and after it (the same for events that change nothing), so replaying the pointer changes of the log
gives the registry's history and its current pointer (:func:`replay`), whatever ran in between.

An event with a ``unique`` name is appended once: a rerun after a crash adds nothing it already added.
"""

from __future__ import annotations

import json
from typing import Any

from tripduration.io.storage import Storage
from tripduration.runtime import clock

EVENTS_FILE = "events.jsonl"
#: the pointer history of registries written before the event log (read as pointer changes, before the log)
LEGACY_HISTORY_FILE = "history.jsonl"
KINDS = ("monitored", "not monitored", "deferred", "resumed", "retrained", "promoted", "rejected", "rolled back")
POINTER_CHANGES = ("promoted", "rolled back")


def now() -> str:
    return clock.stamp()


def append(
    storage: Storage, kind: str, before: str | None, after: str | None, unique: str | None = None, **facts: Any
) -> dict[str, Any] | None:
    """Append one event; returns it as stored (with ``seq``), or None when ``unique`` is already in the log."""
    if kind not in KINDS:
        raise ValueError(f"event kind {kind!r} is not one of {KINDS}")
    record = {**facts, "event": kind, "at": now(), "production_before": before, "production_after": after}
    return storage.append_log(EVENTS_FILE, record, unique=unique)


def read(storage: Storage) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event in order (the legacy pointer history first), and a description of each unreadable entry."""
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in (LEGACY_HISTORY_FILE, EVENTS_FILE):
        for number, line in enumerate(storage.read_log(name), start=1):
            try:
                entry = json.loads(line)
            except ValueError as exc:
                problems.append(f"{storage.where(name)} line {number}: not valid JSON ({exc}); ignored")
                continue
            if not isinstance(entry, dict):
                problems.append(f"{storage.where(name)} line {number}: not a JSON object; ignored")
                continue
            if name == LEGACY_HISTORY_FILE:  # a pointer, as the old history recorded it
                kind = "rolled back" if entry.get("action") == "rollback" else "promoted"
                entry = {**entry, "event": kind, "production_before": entry.get("previous_version")}
                entry["production_after"] = entry.get("version")
            events.append(entry)
    return events, problems


def pointer_changes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") in POINTER_CHANGES]


def replay(events: list[dict[str, Any]]) -> tuple[list[tuple[str | None, str | None]], str | None]:
    """The pointer changes of the log as (before, after) pairs, and the pointer they end on.

    Raises ValueError when the log contradicts itself: a change whose ``before`` is not where the previous
    change left the pointer (a lost or invented event)."""
    pointer: str | None = None
    changes = []
    for event in pointer_changes(events):
        before, after = event.get("production_before"), event.get("production_after")
        if before != pointer and event.get("previous_pointer_error") is None:
            raise ValueError(f"event {event.get('seq')}: production was {pointer}, the event says {before}")
        changes.append((before, after))
        pointer = after
    return changes, pointer
