"""Export of the file-based model registry to MLflow (tracking runs, Model Registry versions, aliases).

The MLOps course's users look for models in MLflow; our source of truth stays the file registry
(:mod:`tripduration.registry.store`). This module mirrors it, one way, and is safe to run again at any time:

- each registry version becomes one MLflow run (experiment = the model's name) holding its params, metrics,
  data lineage as tags, the report and metadata as artifacts, and the model logged with
  ``mlflow.sklearn.log_model``; the run carries the tags ``registry_version`` and ``model_sha256``;
- each run's model becomes one version of the registered model of the same name;
- the aliases ``production`` and ``challenger`` are moved to follow ``production.json``.

Idempotent: a run is found again by ``registry_version`` + ``model_sha256`` (a finished one; a run left
unfinished by an interrupted export is deleted and made again), a model version by its run id, so a second
export creates nothing. The export only reads the registry (``versions()``, ``metadata()``, ``production()``
and the version folders' files) and never writes into it.

MLflow is imported inside the functions: importing it costs seconds, which the pipeline's other commands
should not pay. Its usage telemetry is switched off (``MLFLOW_DISABLE_TELEMETRY``) unless the user set that
variable: an export must not talk to anything but the tracking server it was given.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tripduration.registry.store import ModelRegistry

ALIASES = ("production", "challenger")
MODEL_ARTIFACT = "model"
# MLflow's per-request limit for params and tags in log_batch (metrics allow 1,000)
BATCH_LIMIT = 100
TAG_VALUE_LIMIT = 5000
PACKAGE_DIR = Path(__file__).resolve().parent


class MlflowExportError(RuntimeError):
    """The export cannot start (no tracking URI, unreachable server...); the message says what to do."""


@dataclass
class VersionResult:
    """What the export did for one registry version."""

    version: str
    run_id: str | None = None
    run: str = ""  # created | existing | recreated (an interrupted export's run was replaced)
    model_version: str | None = None
    model_version_status: str = ""  # created | existing
    error: str | None = None


# --------------------------------------------------------------------------- pure helpers (no mlflow)
def sqlite_uri_relative_to(uri: str, base: Path) -> str:
    """``sqlite:///var/mlflow.db`` (relative, resolved by SQLAlchemy against the working directory) ->
    an absolute URI under ``base``, so the same luigi.cfg works from cron. Other URIs are returned as is."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        return prefix + str((base / uri[len(prefix) :]).resolve())
    return uri


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts when the caller names no place.

    For a ``sqlite:///path/mlflow.db`` store MLflow's default is ``./mlruns`` in the *working directory*,
    which scatters artifacts wherever the export happens to run; we put them in ``mlartifacts/`` beside the
    database instead. A tracking server decides for itself (None).
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and tracking_uri != prefix + ":memory:":
        return (Path(tracking_uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()
    return None


def months_by_role(meta: dict[str, Any]) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for entry in meta.get("data", []):
        roles.setdefault(str(entry.get("role")), []).append(str(entry.get("month")))
    return roles


def run_params(meta: dict[str, Any], report_metrics: dict[str, Any]) -> dict[str, str]:
    """MLflow params: the algorithm, its hyper-parameters, the months and the row counts of the fit."""
    algorithm = meta.get("algorithm", {})
    months = months_by_role(meta)
    params: dict[str, Any] = {
        "algorithm.candidate": algorithm.get("candidate"),
        "algorithm.family": algorithm.get("family"),
        "training_months": ",".join(months.get("train", [])) or None,
        "validation_month": ",".join(months.get("validation", [])) or None,
        "test_month": ",".join(months.get("test", [])) or None,
        "target": meta.get("target"),
        "color": meta.get("color"),
        # rows of training + validation the final model was given, and those it was fitted on after the
        # [training] max_rows cap (recorded by registrations that carry it)
        "training_rows": report_metrics.get("final_training_rows"),
        "fit_rows": algorithm.get("fit_rows", meta.get("fit_rows", report_metrics.get("fit_rows"))),
    }
    for key, value in sorted(algorithm.get("params", {}).items()):
        params[f"algorithm.params.{key}"] = value
    return {k: _text(v) for k, v in params.items() if v is not None}


def run_metrics(meta: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics: every number of ``metadata.metrics`` (``test_rmse``, ``baseline_test_rmse``,
    ``test_rmse_ratio_to_baseline``...), the production RMSE the gate compared with, feature importances."""
    metrics: dict[str, float] = {}
    for split, values in sorted(meta.get("metrics", {}).items()):
        for key, value in sorted(values.items()):
            if _is_number(value):
                metrics[f"{split}_{key}"] = float(value)
    production_rmse = meta.get("gate", {}).get("production_rmse_on_test_month")
    if _is_number(production_rmse):
        metrics["gate_production_rmse_on_test_month"] = float(production_rmse)
    for feature, value in sorted(meta.get("feature_importance", {}).items()):
        if _is_number(value):
            metrics[f"importance.{feature}"] = float(value)
    return metrics


def run_tags(meta: dict[str, Any], version: str, registry_home: object) -> dict[str, str]:
    """MLflow tags: identity of the version, data lineage per month, libraries and the gate's decision."""
    gate = meta.get("gate", {})
    tags: dict[str, Any] = {
        "registry_version": version,
        "model_sha256": meta.get("model_sha256"),
        "registered_at": meta.get("registered_at"),
        "registry_home": str(registry_home),
        "registration_key": meta.get("registration_key"),
        "pipeline_task": meta.get("pipeline_task"),
        "gate.promote": gate.get("promote"),
        "gate.reason": gate.get("reason"),
        "gate.compared_with_production": gate.get("compared_with_production"),
        "mlflow.note.content": _description(meta, version),
    }
    for entry in meta.get("data", []):
        prefix = f"data.{entry.get('role')}.{entry.get('month')}"
        for key in ("file", "sha256", "bytes", "rows_in", "rows_kept", "rows_rejected"):
            if key in entry:
                tags[f"{prefix}.{key}"] = entry[key]
    for library, library_version in sorted(meta.get("libraries", {}).items()):
        tags[f"library.{library}"] = library_version
    return {k: _text(v)[:TAG_VALUE_LIMIT] for k, v in tags.items() if v is not None}


def pip_requirements(meta: dict[str, Any]) -> list[str]:
    """The libraries the model was trained with (from its metadata, not from whatever runs the export)."""
    import cloudpickle  # shipped with mlflow, which pickles the model with it

    pins = [f"{name}=={v}" for name, v in sorted(meta.get("libraries", {}).items()) if name != "python"]
    return [*pins, f"cloudpickle=={cloudpickle.__version__}"]


def challenger_of(registry: ModelRegistry, production: str | None) -> str | None:
    """The newest version that passed the quality gate and is not the production one (None if none)."""
    for version in reversed(registry.versions()):
        if version != production and registry.metadata(version).get("gate", {}).get("promote"):
            return version
    return None


def _description(meta: dict[str, Any], version: str) -> str:
    test = meta.get("metrics", {}).get("test", {})
    baseline = meta.get("metrics", {}).get("baseline_test", {})
    lines = [
        f"{meta.get('name', '')} {version}: {meta.get('algorithm', {}).get('candidate', '?')}",
        f"test RMSE {_fmt(test.get('rmse'))} vs baseline {_fmt(baseline.get('rmse'))}",
        f"gate: {meta.get('gate', {}).get('reason', 'no gate decision recorded')}",
        "Exported from the file registry, which stays the source of truth.",
    ]
    return "\n\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if _is_number(value) else "n/a"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _epoch_ms(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    try:
        return int(dt.datetime.fromisoformat(timestamp).timestamp() * 1000)
    except ValueError:
        return None


# --------------------------------------------------------------------------- mlflow
def _mlflow() -> Any:
    """Import mlflow on first use, with its usage telemetry off unless the user decided otherwise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from tripduration.runtime.extras import import_extra

    return import_extra("mlflow")  # not installed: MissingExtraError, one line naming the 'mlflow' extra


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow logs a line per model (missing signature, where to view the run); we print our own summary."""
    logger = logging.getLogger("mlflow")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def _using(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's global tracking and registry URI for the export, then restore them exactly.

    ``mlflow.sklearn.log_model`` works on the active run of the global tracking URI, and registering a
    ``models:/`` source resolves it through that URI too: with MLflow's default (``sqlite:///mlflow.db`` in
    the working directory) the logged model would land in a stray database. MLflow's own
    ``_use_tracking_uri`` restores by *unsetting* ``$MLFLOW_TRACKING_URI`` when only the variable was set,
    so the module globals and the variables are saved and put back here.
    """
    mlflow = _mlflow()
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _experiment_id(client: Any, name: str, artifact_location: str | None, registry_home: object) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(
        client.create_experiment(
            name,
            artifact_location=artifact_location,
            tags={"registry_home": str(registry_home), "mlflow.note.content": "Exported from the file registry."},
        )
    )


def _find_run(client: Any, experiment_id: str, version: str, sha256: str) -> tuple[Any | None, list[Any]]:
    """(the finished run of this version, unfinished runs an interrupted export left).

    A finished run of this version whose model sha256 is not the registry's is an error naming both: the
    version's content changed after it was exported, and one registry version must never become two MLflow
    model versions.
    """
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.registry_version = '{version}'", order_by=["attributes.start_time ASC"]
    )
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("mlflow_model_uri")]
    for run in finished:
        exported = run.data.tags.get("model_sha256")
        if exported != sha256:
            raise MlflowExportError(
                f"{version}: the registry's model has sha256 {sha256}, but MLflow run {run.info.run_id} holds "
                f"the one exported before ({exported}): the version changed after export. Refused (one registry "
                "version is one MLflow model version): restore the version, or delete that run and its model "
                "version in MLflow and export again"
            )
    unfinished = [r for r in runs if r not in finished]
    return (finished[0] if finished else None), unfinished


def _log_batch(client: Any, run_id: str, meta: dict[str, Any], params: dict[str, str], tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    timestamp = _epoch_ms(meta.get("registered_at")) or int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    metrics = [Metric(k, v, timestamp, 0) for k, v in run_metrics(meta).items()]
    for chunk in _chunks([Param(k, v) for k, v in params.items()], BATCH_LIMIT):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks([RunTag(k, v) for k, v in tags.items()], BATCH_LIMIT):
        client.log_batch(run_id, tags=chunk)
    for chunk in _chunks(metrics, BATCH_LIMIT):
        client.log_batch(run_id, metrics=chunk)


def _log_artifacts(client: Any, run_id: str, folder: Path) -> None:
    if (folder / "report").is_dir():
        client.log_artifacts(run_id, str(folder / "report"), "report")
    for name in ("metadata.json", "reference_profile.json"):
        if (folder / name).is_file():
            client.log_artifact(run_id, str(folder / name))


def _log_model(run_id: str, tracking_uri: str, model: Any, meta: dict[str, Any]) -> str:
    """``mlflow.sklearn.log_model`` into the run; returns the logged model's URI.

    cloudpickle rather than MLflow's default skops: the pipeline holds our own functions and transformers,
    which skops refuses to load unless each is listed as trusted. ``code_paths`` ships the ``tripduration``
    package inside the MLflow model, so ``mlflow.sklearn.load_model`` works where this project is not
    installed; the pip requirements are the versions the model was trained with.
    """
    mlflow = _mlflow()
    # ending the run writes "View run ... at: URL" to stdout for a tracking server, which would break
    # `export-mlflow --json`; the summary names the runs anyway
    with contextlib.redirect_stdout(io.StringIO()), _using(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            serialization_format="cloudpickle",
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=pip_requirements(meta),
        )
        mlflow.set_tag("mlflow_model_uri", info.model_uri)
    return str(info.model_uri)


def _export_run(
    client: Any, experiment_id: str, registry: ModelRegistry, version: str, tracking_uri: str
) -> tuple[str, str, str]:
    """Find or create the run of ``version``: (run id, logged model URI, created | existing | recreated)."""
    meta = registry.metadata(version)
    sha256 = registry.verify(version)  # the registry's own checks, on every export: bytes vs metadata and pointer
    found, unfinished = _find_run(client, experiment_id, version, sha256)
    if found is not None:
        return found.info.run_id, found.data.tags["mlflow_model_uri"], "existing"
    for run in unfinished:  # an export interrupted half-way: its run is incomplete, make it again
        client.delete_run(run.info.run_id)
    model, _ = registry.load_model(version)  # checks the file's sha256 before unpickling it
    try:
        report = json.loads(registry.storage.read_bytes(f"versions/{version}/report/metrics.json"))
    except FileNotFoundError:
        report = {}
    run = client.create_run(
        experiment_id,
        start_time=_epoch_ms(meta.get("registered_at")),
        tags={"registry_version": version, "model_sha256": sha256},
        run_name=version,
    )
    run_id = run.info.run_id
    try:
        _log_batch(client, run_id, meta, run_params(meta, report), run_tags(meta, version, registry.home))
        with registry.storage.local_copy(f"versions/{version}", folder=True) as folder:
            _log_artifacts(client, run_id, folder)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    model_uri = _log_model(run_id, tracking_uri, model, meta)  # ends the run: FINISHED, or FAILED on error
    return run_id, model_uri, "recreated" if unfinished else "created"


def _registered_model(client: Any, name: str, registry_home: object) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if not _is_missing(exc):
            raise
    return client.create_registered_model(
        name,
        tags={"registry_home": str(registry_home)},
        description="Mirror of the file registry (the source of truth); aliases follow its production pointer.",
    )


def _export_model_version(
    client: Any, name: str, run_id: str, model_uri: str, version: str, meta: dict[str, Any]
) -> tuple[str, str]:
    """Find the model version made from ``run_id`` or create it: (MLflow version number, created | existing)."""
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(min(int(mv.version) for mv in existing)), "existing"
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else None
    created = client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        model_id=model_id,
        tags={"registry_version": version, "model_sha256": str(meta.get("model_sha256"))},
        description=str(meta.get("gate", {}).get("reason", "")),
    )
    return str(created.version), "created"


def _sync_aliases(
    client: Any, name: str, registry: ModelRegistry, numbers: dict[str, str], failed: set[str]
) -> dict[str, dict[str, Any]]:
    """Point ``production``/``challenger`` at the MLflow versions of our production and challenger."""
    pointer = registry.production()
    production = str(pointer["version"]) if pointer else None
    targets = {"production": production, "challenger": challenger_of(registry, production)}
    current = dict(client.get_registered_model(name).aliases or {})
    result: dict[str, dict[str, Any]] = {}
    for alias in ALIASES:
        target = targets[alias]
        have = current.get(alias)
        have = str(have) if have is not None else None
        entry: dict[str, Any] = {"registry_version": target, "model_version": None, "previous": have}
        if target in failed:
            entry["action"] = f"left as it was: {target} failed to export"
            entry["model_version"] = have
        elif target is None:
            entry["action"] = "removed" if have else "none"
            if have:
                client.delete_registered_model_alias(name, alias)
        else:
            want = numbers[target]
            entry["model_version"] = want
            entry["action"] = "unchanged" if have == want else ("moved" if have else "set")
            if have != want:
                client.set_registered_model_alias(name, alias, want)
        result[alias] = entry
    return result


def export_registry(registry: ModelRegistry, tracking_uri: str, artifact_location: str | None = None) -> dict[str, Any]:
    """Mirror every version of ``registry`` into MLflow at ``tracking_uri``; returns what was done.

    Safe to call after every registration (``[mlflow] tracking_uri``) and again at any time: what already
    exists is found, not duplicated. A version that cannot be exported (e.g. its model file fails the sha256
    check) is reported under ``errors`` and the others are still exported; an alias whose target failed is
    left where it was. ``artifact_location`` only applies when the experiment is created.
    """
    mlflow = _mlflow()
    if artifact_location is None:
        artifact_location = default_artifact_location(tracking_uri)
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    name = registry.name
    results: list[VersionResult] = []
    with _quiet_mlflow(), _using(tracking_uri):
        # a sqlite store is created (and migrated) by the client's constructor: inside the quiet block
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        experiment_id = _experiment_id(client, name, artifact_location, registry.home)
        _registered_model(client, name, registry.home)
        for version in registry.versions():
            results.append(_export_version(client, experiment_id, registry, version, tracking_uri))
        numbers = {r.version: str(r.model_version) for r in results if r.error is None}
        failed = {r.version for r in results if r.error is not None}
        aliases = _sync_aliases(client, name, registry, numbers, failed)
    return _summary(tracking_uri, name, experiment_id, results, aliases)


def _export_version(
    client: Any, experiment_id: str, registry: ModelRegistry, version: str, tracking_uri: str
) -> VersionResult:
    from mlflow.exceptions import MlflowException

    from tripduration.errors import RegistryError

    result = VersionResult(version)
    try:
        result.run_id, model_uri, result.run = _export_run(client, experiment_id, registry, version, tracking_uri)
        result.model_version, result.model_version_status = _export_model_version(
            client, registry.name, result.run_id, model_uri, version, registry.metadata(version)
        )
    except (RegistryError, MlflowExportError, MlflowException, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _summary(
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
            "runs": sum(r["run"] == "existing" for r in ok),
            "model_versions": sum(r["model_version_status"] == "existing" for r in ok),
        },
        "errors": [{"version": r["version"], "error": r["error"]} for r in rows if r["error"] is not None],
    }


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
    for alias, entry in result["aliases"].items():
        if entry["registry_version"] is None:
            where = "no version" + (f" (alias removed, was version {entry['previous']})" if entry["previous"] else "")
        else:
            where = f"{entry['registry_version']} = version {entry['model_version']} ({entry['action']}"
            where += f", was version {entry['previous']})" if entry["action"] == "moved" else ")"
        lines.append(f"  @{alias:10} -> {where}")
    created, existing = result["created"], result["existing"]
    lines.append(
        f"  created {created['runs']} run(s) and {created['model_versions']} model version(s); "
        f"already there: {existing['runs']} run(s), {existing['model_versions']} model version(s)"
        + (f"; {len(result['errors'])} version(s) FAILED" if result["errors"] else "")
    )
    return "\n".join(lines)
