"""``tripduration export-mlflow``: mirror every version of a file registry into MLflow (backfilling a registry).

The course's users look for models in MLflow; our source of truth stays the file registry. Each registry version
becomes one MLflow run (experiment = the model's name) holding its params, metrics, data lineage as tags, the
report and metadata as artifacts and the logged model (:mod:`.model`: with its signature and input example),
tagged ``registry_version`` and ``model_sha256``; each run's model becomes one version of the registered model of
the same name; the aliases ``production`` and ``challenger`` follow ``production.json``. A version a training job
logged as it ran (:mod:`.tracking`) is found, not made again: it is its job's parent run.

Safe to run again at any time: what exists is found (:func:`~.client.mirror_version`), so a second export creates
nothing; every version is re-checked against the registry's own checks first, and one that fails them, or whose
content differs from what was exported, is an error naming it (the command exits 1). The export only reads the
registry and never writes into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from tripduration.registry.mlflow.client import VersionResult, mirror_version, session, sync_aliases
from tripduration.registry.store import ModelRegistry


def export_registry(registry: ModelRegistry, tracking_uri: str, artifact_location: str | None = None) -> dict[str, Any]:
    """Mirror every version of ``registry`` into MLflow at ``tracking_uri``; returns what was done.

    A version that cannot be exported (its model fails the sha256 check, it changed after its export...) is
    reported under ``errors`` and the others are still exported; an alias whose target failed is left where it
    was. ``artifact_location`` only applies when the experiment is created.
    """
    with session(tracking_uri, registry, artifact_location) as s:
        results = [mirror_version(s, registry, version) for version in registry.versions()]
        aliases = sync_aliases(s, registry, failed={r.version for r in results if r.error is not None})
        return summary(tracking_uri, registry.name, s.experiment_id, results, aliases)


def summary(
    tracking_uri: str,
    name: str,
    experiment_id: str,
    results: Iterable[VersionResult],
    aliases: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    rows = [asdict(r) for r in results]
    ok = [r for r in rows if r["error"] is None]
    return {
        "tracking_uri": tracking_uri,
        "model_name": name,
        "experiment_id": experiment_id,
        "versions": rows,
        "aliases": aliases,
        "created": {
            "runs": sum(r["run"] in ("created", "recreated") for r in ok),
            "model_versions": sum(r["model_version_status"] == "created" for r in ok),
        },
        "existing": {
            "runs": sum(r["run"] in ("existing", "job") for r in ok),
            "model_versions": sum(r["model_version_status"] == "existing" for r in ok),
        },
        "errors": [{"version": r["version"], "error": r["error"]} for r in rows if r["error"] is not None],
    }


def format_aliases(aliases: dict[str, dict[str, Any]]) -> list[str]:
    """A line per alias: where it points now and what changed."""
    lines = []
    for alias, entry in aliases.items():
        if entry["registry_version"] is None:
            where = "no version" + (f" (alias removed, was version {entry['previous']})" if entry["previous"] else "")
        else:
            where = f"{entry['registry_version']} = version {entry['model_version']} ({entry['action']}"
            where += f", was version {entry['previous']})" if entry["action"] == "moved" else ")"
        lines.append(f"  @{alias:10} -> {where}")
    return lines


def format_summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal: per version what was created or found, where the aliases point."""
    head = f"MLflow export of {result['model_name']} to {result['tracking_uri']}"
    lines = [f"{head} (experiment {result['experiment_id']})"]
    for row in result["versions"]:
        if row["error"]:
            lines.append(f"  {row['version']}  FAILED: {row['error']}")
        else:
            lines.append(
                f"  {row['version']}  run {row['run_id']} {row['run']:9}  "
                f"model version {row['model_version']} {row['model_version_status']}"
            )
    lines += format_aliases(result["aliases"])
    created, existing = result["created"], result["existing"]
    lines.append(
        f"  created {created['runs']} run(s) and {created['model_versions']} model version(s); "
        f"already there: {existing['runs']} run(s), {existing['model_versions']} model version(s)"
        + (f"; {len(result['errors'])} version(s) FAILED" if result["errors"] else "")
    )
    return "\n".join(lines)
