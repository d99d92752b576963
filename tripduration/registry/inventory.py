"""What ``pipeline.py models`` shows: every valid version with its status, and every problem of the registry.

Statuses: production (the pointer) / retired (was production, replaced since) / challenger (passed the gate,
never served) / rejected (the gate refused it) / registered (no gate decision: registered through the API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tripduration.errors import RegistryError
from tripduration.registry.names import VERSION_FORM, is_version

if TYPE_CHECKING:
    from tripduration.registry.store import ModelRegistry


def _dig(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...`` or None when a level is missing or not a dict (listing tolerates odd metadata)."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _test_month(meta: dict[str, Any]) -> Any:
    data = meta.get("data")
    rows = data if isinstance(data, list) else []
    return next((d.get("month") for d in rows if isinstance(d, dict) and d.get("role") == "test"), None)


def status(version: str, gate: Any, current: bool, ever_production: set[Any]) -> str:
    """The status of a version (see the module docstring)."""
    if current:
        return "production"
    if version in ever_production:
        return "retired"
    if not isinstance(gate, dict):
        return "registered"
    return "challenger" if gate.get("promote") else "rejected"


def inventory(registry: ModelRegistry) -> dict[str, list[Any]]:
    """``versions`` (valid ones, with status) and ``problems`` (what is not valid).

    Never fails on a bad registry entry: a corrupt pointer, an incomplete folder, unreadable metadata or a
    model whose sha256 does not match are each named in ``problems`` with the file and what to do.
    """
    problems: list[dict[str, str]] = []
    try:
        pointer = registry.production()
    except RegistryError as exc:
        pointer = None
        problems.append({"path": str(registry.production_file), "problem": str(exc)})
    entries, history_problems = registry.history()
    problems += [{"path": str(registry.history_file), "problem": p} for p in history_problems]
    ever = {e.get("version") for e in entries}
    problems += _stray_entries(registry)
    rows = []
    for version in registry.version_folders():
        try:
            rows.append(_listing_row(registry, version, pointer, ever))
        except RegistryError as exc:
            problems.append({"path": str(registry.versions_dir / version), "problem": str(exc)})
    return {"versions": rows, "problems": problems}


def _stray_entries(registry: ModelRegistry) -> list[dict[str, str]]:
    """Entries of ``versions/`` that are not version names (``children`` never shows a write in progress)."""
    return [
        {
            "path": str(registry.versions_dir / n),
            "problem": f"{registry.versions_dir / n}: not a version name ({VERSION_FORM}); ignored",
        }
        for n in registry.storage.children("versions")
        if not is_version(n)
    ]


def _listing_row(
    registry: ModelRegistry, version: str, pointer: dict[str, Any] | None, ever: set[Any]
) -> dict[str, Any]:
    """One valid version's row; RegistryError if it is incomplete, unreadable or fails its sha256 check."""
    meta = registry.metadata(version)
    current = pointer is not None and pointer["version"] == version
    registry.verify(version)  # against the pointer too when it names this version
    rollback_reason = pointer.get("reason") if current and pointer and pointer.get("action") == "rollback" else None
    return {
        "version": version,
        "status": status(version, meta.get("gate"), current, ever),
        "registered_at": meta.get("registered_at"),
        "algorithm": _dig(meta, "algorithm", "candidate"),
        "test_month": _test_month(meta),
        "test_rmse": _dig(meta, "metrics", "test", "rmse"),
        "baseline_rmse": _dig(meta, "metrics", "baseline_test", "rmse"),
        "gate_reason": _dig(meta, "gate", "reason"),
        "rollback_reason": rollback_reason,
        "forced": bool(current and pointer and pointer.get("forced")),
    }
