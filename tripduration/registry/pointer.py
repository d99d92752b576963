"""The production pointer and the event log of a model name (mixed into ``ModelRegistry``).

``production.json`` is only ever replaced by compare-and-swap against the pointer the decision was made on, and
every replacement is an event of the log (``promoted`` / ``rolled back``, see :mod:`tripduration.registry.events`)
appended right after the swap. Should a process die between the two, :meth:`ProductionPointer.reconcile` appends
the missing event from the pointer itself (which records its previous version, action, reason and sequence), so
the log replays to the pointer whatever happened.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tripduration.errors import RegistryError
from tripduration.io.formats import json_bytes
from tripduration.registry import events
from tripduration.registry.names import POINTER_FILE, GateRejectedError, check_version
from tripduration.runtime import clock

if TYPE_CHECKING:
    from tripduration.io.storage import Storage


class ProductionPointer:
    """Writing the production pointer, rollbacks, and the event log; mixed into ``ModelRegistry``."""

    storage: Storage
    name: str
    production_file: Any

    if TYPE_CHECKING:  # provided by ModelRegistry

        def metadata(self, version: str) -> dict[str, Any]: ...
        def production(self) -> dict[str, Any] | None: ...
        def _validated_pointer(self, data: bytes) -> dict[str, Any]: ...
        def _current_pointer_for(self, version: str) -> dict[str, Any] | None: ...
        def _model_bytes(self, version: str) -> bytes: ...
        def check_model_bytes(self, version: str, meta: dict[str, Any], data: bytes, pointer: Any) -> str: ...
        def lock(self) -> contextlib.AbstractContextManager[None]: ...

    # ----------------------------------------------------------------- the event log
    def events(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every event of the log in order, and a description of each entry that could not be read."""
        return events.read(self.storage)

    def history(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The production changes of the log (each a pointer as written, with ``event`` and ``seq``)."""
        found, problems = self.events()
        return events.pointer_changes(found), problems

    def current_version(self) -> str | None:
        """The production version now, or None (none yet, or an unreadable pointer)."""
        try:
            pointer = self.production()
        except RegistryError:
            return None
        return str(pointer["version"]) if pointer else None

    def record_event(self, kind: str, unique: str | None = None, **facts: Any) -> dict[str, Any] | None:
        """Append a monthly-loop event (monitored, deferred, resumed, retrained, rejected...) with the production
        version now as both before and after; None when ``unique`` was recorded already (a rerun)."""
        version = self.current_version()
        return events.append(self.storage, kind, version, version, unique=unique, **facts)

    def reconcile(self) -> dict[str, Any] | None:
        """Append the pointer change a process killed right after the swap did not log; returns it, if any."""
        try:
            pointer = self.production()
        except RegistryError:
            return None
        if pointer is None or "sequence" not in pointer:
            return None
        logged = events.pointer_changes(self.events()[0])
        if any(e.get("sequence") == pointer["sequence"] and e.get("version") == pointer["version"] for e in logged):
            return None
        return self._log_change(pointer, recovered=True)

    def _log_change(self, pointer: dict[str, Any], recovered: bool = False) -> dict[str, Any] | None:
        kind = "rolled back" if pointer.get("action") == "rollback" else "promoted"
        facts = {k: v for k, v in pointer.items() if k not in ("event", "at", "seq")}
        if recovered:
            facts["recovered"] = "logged after the fact: the process that swapped the pointer died before logging it"
        # the pointer's own bytes name the change: the same change logged twice (reconcile after a crash) is one
        unique = "pointer:" + hashlib.sha256(json_bytes(pointer)).hexdigest()
        return events.append(
            self.storage, kind, pointer.get("previous_version"), pointer["version"], unique=unique, **facts
        )

    # ----------------------------------------------------------------- the pointer
    def set_production(
        self,
        version: str,
        reason: str,
        action: str = "promote",
        extra: dict[str, Any] | None = None,
        recheck: Callable[[dict[str, Any] | None], tuple[bool, str]] | None = None,
    ) -> dict[str, Any] | None:
        """Point production at ``version`` and log the change; returns the new pointer.

        The pointer is replaced by compare-and-swap against the one just read: ``recheck(current)`` (the quality
        gate against the pointer about to be replaced) runs before each attempt, and again if another writer
        swapped first; it returns None when ``recheck`` says no (nothing written). The old pointer need not be
        readable: a corrupt one is replaced, and the new pointer records ``previous_version: null`` with
        ``previous_pointer_error`` saying what was wrong.
        """
        meta = self.metadata(check_version(version))
        self.reconcile()
        for _ in range(100):
            try:
                data, token = self.storage.read_with_token(POINTER_FILE)
            except FileNotFoundError:
                data, token = None, None
            current, problem = None, None
            try:
                current = self._validated_pointer(data) if data is not None else None
            except RegistryError as exc:
                problem = str(exc)
            why = reason
            if recheck is not None:
                promote, why = recheck(current)
                if not promote:
                    return None
            pointer = {
                "name": self.name,
                "version": version,
                "action": action,
                "reason": why,
                "previous_version": current["version"] if current else None,
                "sequence": int(current.get("sequence", 0)) + 1 if current else 1,
                "changed_at": clock.stamp("microseconds"),
                "model_sha256": meta["model_sha256"],
                "metrics": meta.get("metrics", {}),
                **(extra or {}),
            }
            if problem is not None:
                pointer["previous_pointer_error"] = problem
            if self.storage.replace_if(POINTER_FILE, json_bytes(pointer), token):
                self._log_change(pointer)
                return pointer
        raise RegistryError(f"{self.production_file}: still changing after 100 attempts")

    def rollback(self, version: str, reason: str, force: bool = False) -> dict[str, Any]:
        """Point production at any registered version, after checking its model file against its metadata.

        The old pointer is neither needed nor trusted (this is how a corrupt ``production.json`` is repaired).
        A version the quality gate rejected needs ``force=True``; the pointer then records ``forced`` and the
        gate's reason. A rollback to the version already in production changes nothing and records nothing
        (the pointer returned says ``unchanged``).
        """
        version = check_version(version, "rollback version")
        with self.lock():
            meta = self.metadata(version)
            self.check_model_bytes(version, meta, self._model_bytes(version), None)
            current = self._current_pointer_for(version)
            if current is not None and current.get("model_sha256") == meta.get("model_sha256"):
                return {**current, "unchanged": True}
            gate = meta.get("gate")
            extra: dict[str, Any] = {}
            if isinstance(gate, dict) and gate.get("promote") is False:
                if not force:
                    raise GateRejectedError(
                        f"{version} was rejected by the quality gate ({gate.get('reason')}); "
                        "add --force to roll back to it anyway"
                    )
                extra = {"forced": True, "gate_reason": gate.get("reason")}
            pointer = self.set_production(version, reason, action="rollback", extra=extra)
            if pointer is None:  # only a recheck can refuse, and a rollback has none
                raise RegistryError(f"{self.name}: rollback to {version} was refused")
            return pointer
