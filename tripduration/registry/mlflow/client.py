"""MLflow itself: imported on first use, one tracking URI per session; a registry version's run, model and model
version (:func:`mirror_version`), and the aliases (:func:`sync_aliases`). Used by the export and the tracking.

A version is mirrored once: its run is found again by ``registry_version`` (a finished one holding the logged
model; a run an interrupted export left unfinished is deleted and made again), its model version by its run id.
Every version touched is first checked by the registry itself (:meth:`ModelRegistry.verify`: its bytes against
the sha256 in its metadata and in the production pointer), and a finished run of the version that holds another
model (another ``model_sha256``) is an error naming both: one registry version is never two MLflow model
versions. MLflow's usage telemetry is off (``MLFLOW_DISABLE_TELEMETRY``) unless the user set that variable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tripduration.errors import RegistryError
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.mlflow import mapping as m
from tripduration.registry.mlflow.model import (
    MODEL_ARTIFACT,
    PACKAGE_DIR,
    input_example,
    mlflow_model,
    pip_requirements,
    signature,
)
from tripduration.registry.store import ModelRegistry


class MlflowExportError(RuntimeError):
    """MLflow holds something the registry contradicts, or cannot be used; the message says what to do."""


@dataclass
class Session:
    """A tracking URI in use: its client, the experiment and registered model named after the model."""

    client: Any
    uri: str
    experiment_id: str
    name: str


@dataclass
class VersionResult:
    """What mirroring one registry version did."""

    version: str
    run_id: str | None = None
    run: str = ""  # created | existing | recreated (an interrupted export's run replaced) | job (its job's run)
    model_version: str | None = None
    model_version_status: str = ""  # created | existing
    error: str | None = None


def mlflow_module() -> Any:
    """Import mlflow on first use, with its usage telemetry off unless the user decided otherwise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from tripduration.runtime.extras import import_extra

    return import_extra("mlflow")  # not installed: MissingExtraError, one line naming the 'mlflow' extra


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """MLflow logs a line per model (where to view the run...); our callers print their own summary."""
    logger = logging.getLogger("mlflow")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def using(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's global tracking and registry URI, then restore them exactly.

    ``mlflow.sklearn.log_model`` works on the active run of the global tracking URI, and registering a
    ``models:/`` source resolves it through that URI too: with MLflow's default (``sqlite:///mlflow.db`` in
    the working directory) the logged model would land in a stray database. MLflow's own
    ``_use_tracking_uri`` restores by *unsetting* ``$MLFLOW_TRACKING_URI`` when only the variable was set,
    so the module globals and the variables are saved and put back here.
    """
    mlflow = mlflow_module()
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


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Refuse at once when nothing answers at a tracking server's URL: MLflow's client retries each call for
    about four minutes (measured: 245 s), which every tracked task of a run would wait. Any HTTP answer will do."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (an authenticating proxy, an older server without /health)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise MlflowExportError(
            f"no MLflow tracking server answers at {uri} ({reason}); start it, or fix the tracking URI"
        ) from None


@contextlib.contextmanager
def session(uri: str, registry: ModelRegistry, artifact_location: str | None = None) -> Iterator[Session]:
    """MLflow at ``uri`` with the experiment and registered model of ``registry``'s model (made when missing;
    ``artifact_location`` only applies when the experiment is made: default ``mlartifacts/`` beside a sqlite
    database). A server that does not answer is an :class:`MlflowExportError` within seconds."""
    check_server(uri)
    mlflow = mlflow_module()
    database = m.sqlite_file(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    location = artifact_location or m.default_artifact_location(uri)
    # ending a run on a tracking server prints "View run ... at: URL" to stdout: it would break `--json`, and
    # a training job's output would get a line per candidate
    with quiet(), using(uri), contextlib.redirect_stdout(io.StringIO()):
        # a sqlite store is created (and migrated) by the client's constructor: inside the quiet block
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment_id = _experiment_id(client, registry.name, location, registry.home)
        _registered_model(client, registry.name, registry.home)
        yield Session(client, uri, experiment_id, registry.name)


def search_runs(s: Session, **tags: str) -> list[Any]:
    """The experiment's runs carrying every tag given (values are our own names: letters, digits, ``_-.``)."""
    where = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return list(s.client.search_runs([s.experiment_id], filter_string=where, order_by=["attributes.start_time ASC"]))


def log_batch(
    s: Session,
    run_id: str,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    timestamp: int | None = None,
) -> None:
    """Log what the run does not hold yet: params are immutable in MLflow and a metric logged again would be a
    second point, so only new keys are logged; tags are set (again). ``timestamp``: of the metrics (epoch ms;
    default now)."""
    from mlflow.entities import Metric, Param, RunTag

    data = s.client.get_run(run_id).data
    timestamp = timestamp or int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    batches: list[dict[str, list[Any]]] = []
    for chunk in _chunks([Param(k, v) for k, v in params.items() if k not in data.params], m.BATCH_LIMIT):
        batches.append({"params": chunk})
    for chunk in _chunks([RunTag(k, v) for k, v in tags.items()], m.BATCH_LIMIT):
        batches.append({"tags": chunk})
    for chunk in _chunks([Metric(k, v, timestamp, 0) for k, v in metrics.items() if k not in data.metrics], 1000):
        batches.append({"metrics": chunk})
    for batch in batches:
        s.client.log_batch(run_id, **batch)


def mirror_version(s: Session, registry: ModelRegistry, version: str, into_run: str | None = None) -> VersionResult:
    """Mirror one registry version: its run (params, metrics, tags, artifacts, the logged model) and its model
    version. ``into_run``: log into this run (a training job's parent run) unless the version is mirrored
    already. A version that cannot be mirrored is reported in ``error``, nothing raised."""
    from mlflow.exceptions import MlflowException

    result = VersionResult(version)
    try:
        meta = registry.model_metadata(version)
        result.run_id, model_uri, result.run = _version_run(s, registry, version, meta, into_run)
        result.model_version, result.model_version_status = _model_version(s, result.run_id, model_uri, version, meta)
    except (RegistryError, MlflowExportError, MlflowException, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def sync_aliases(s: Session, registry: ModelRegistry, failed: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Point ``production``/``challenger`` at the MLflow model versions of the registry's production and
    challenger. An alias whose target failed to mirror, or is not in MLflow, is left where it was."""
    targets = m.alias_targets(registry)
    current = dict(s.client.get_registered_model(s.name).aliases or {})
    result: dict[str, dict[str, Any]] = {}
    for alias in m.ALIASES:
        target, have = targets[alias], current.get(alias)
        have = str(have) if have is not None else None
        entry: dict[str, Any] = {"registry_version": target, "model_version": have, "previous": have}
        want = None if target is None else _number_of(s, target)
        if target is not None and target in (failed or set()):
            entry["action"] = f"left as it was: {target} failed to export"
        elif target is not None and want is None:
            entry["action"] = f"left as it was: {target} is not in MLflow (export-mlflow mirrors it)"
        elif want is None:
            entry["action"] = "removed" if have else "none"
            entry["model_version"] = None
            if have:
                s.client.delete_registered_model_alias(s.name, alias)
        else:
            entry["model_version"] = want
            entry["action"] = "unchanged" if have == want else ("moved" if have else "set")
            if have != want:
                s.client.set_registered_model_alias(s.name, alias, want)
        result[alias] = entry
    return result


# --------------------------------------------------------------------------- one version
def _version_run(
    s: Session, registry: ModelRegistry, version: str, meta: ModelMetadata, into_run: str | None
) -> tuple[str, str, str]:
    """Find or make the run of ``version``: (run id, logged model URI, created | existing | recreated | job)."""
    sha256 = registry.verify(version)  # the registry's own checks, on every version touched
    found, unfinished = _find_run(s, version, sha256)
    if found is not None:
        return found.info.run_id, found.data.tags[m.TAG_MODEL_URI], "existing"
    if into_run is None and meta.registration_key:  # tracked as it ran, but its model never reached MLflow
        into_run = next((r.info.run_id for r in search_runs(s, **{m.TAG_JOB: meta.registration_key})), None)
    for run in unfinished:  # an export interrupted half-way: its run is incomplete, make it again
        if run.info.run_id != into_run:
            s.client.delete_run(run.info.run_id)
    model, _ = registry.load_model(version)  # checks the file's sha256 before unpickling it
    registered = m.registered_at_ms(meta)
    if into_run is None:
        identity = {m.TAG_VERSION: version, m.TAG_SHA256: sha256}
        run_id = s.client.create_run(
            s.experiment_id, start_time=registered, tags=identity, run_name=version
        ).info.run_id
    else:
        run_id = into_run
    try:
        tags = m.run_tags(meta, version, registry.home)
        log_batch(s, run_id, m.run_params(meta, _report(registry, version)), tags, m.run_metrics(meta), registered)
        with registry.storage.local_copy(f"versions/{version}", folder=True) as folder:
            _log_artifacts(s.client, run_id, folder)
    except BaseException:
        s.client.set_terminated(run_id, status="FAILED")
        raise
    model_uri = _log_model(s, run_id, model, meta)  # ends the run: FINISHED, or FAILED on error
    status = "job" if into_run else ("recreated" if unfinished else "created")
    return run_id, model_uri, status


def _report(registry: ModelRegistry, version: str) -> dict[str, Any]:
    try:
        report = json.loads(registry.storage.read_bytes(f"versions/{version}/report/metrics.json"))
    except FileNotFoundError:
        return {}
    return report if isinstance(report, dict) else {}


def _find_run(s: Session, version: str, sha256: str) -> tuple[Any | None, list[Any]]:
    """(the finished run of this version, unfinished runs an interrupted export left).

    A finished run of this version whose model sha256 is not the registry's is an error naming both: the
    version's content changed after it was exported, and one registry version must never become two MLflow
    model versions.
    """
    runs = search_runs(s, **{m.TAG_VERSION: version})
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get(m.TAG_MODEL_URI)]
    for run in finished:
        exported = run.data.tags.get(m.TAG_SHA256)
        if exported != sha256:
            raise MlflowExportError(
                f"{version}: the registry's model has sha256 {sha256}, but MLflow run {run.info.run_id} holds "
                f"the one exported before ({exported}): the version changed after export. Refused (one registry "
                "version is one MLflow model version): restore the version, or delete that run and its model "
                "version in MLflow and export again"
            )
    unfinished = [r for r in runs if r not in finished]
    return (finished[0] if finished else None), unfinished


def _log_artifacts(client: Any, run_id: str, folder: Path) -> None:
    if (folder / "report").is_dir():
        client.log_artifacts(run_id, str(folder / "report"), "report")
    for name in ("metadata.json", "reference_profile.json"):
        if (folder / name).is_file():
            client.log_artifact(run_id, str(folder / name))


def _log_model(s: Session, run_id: str, model: Any, meta: ModelMetadata) -> str:
    """``mlflow.sklearn.log_model`` into the run (:mod:`.model`: signature, input example); the model's URI.

    cloudpickle rather than MLflow's default skops: the pipeline holds our own functions and transformers,
    which skops refuses to load unless each is listed as trusted. ``code_paths`` ships the ``tripduration``
    package inside the MLflow model, so it loads where this project is not installed; the pip requirements
    are the versions the model was trained with.
    """
    mlflow = mlflow_module()
    with using(s.uri), mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            mlflow_model(model),
            name=MODEL_ARTIFACT,
            serialization_format="cloudpickle",
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=pip_requirements(meta),
            signature=signature(),
            input_example=input_example(),
        )
        mlflow.set_tag(m.TAG_MODEL_URI, info.model_uri)
    return str(info.model_uri)


def _model_version(s: Session, run_id: str, model_uri: str, version: str, meta: ModelMetadata) -> tuple[str, str]:
    """Find the model version made from ``run_id`` or create it: (MLflow version number, created | existing)."""
    existing = s.client.search_model_versions(f"name = '{s.name}' and run_id = '{run_id}'")
    if existing:
        return str(min(int(mv.version) for mv in existing)), "existing"
    created = s.client.create_model_version(
        s.name,
        source=model_uri,
        run_id=run_id,
        model_id=model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else None,
        tags={m.TAG_VERSION: version, m.TAG_SHA256: str(meta.model_sha256)},
        description=str((meta.gate or {}).get("reason", "")),
    )
    return str(created.version), "created"


def _number_of(s: Session, version: str) -> str | None:
    """The MLflow model version mirroring registry ``version`` (None when it is not mirrored)."""
    found = s.client.search_model_versions(f"name = '{s.name}' and tags.{m.TAG_VERSION} = '{version}'")
    return str(min(int(mv.version) for mv in found)) if found else None


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _experiment_id(client: Any, name: str, artifact_location: str | None, registry_home: object) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    tags = {"registry_home": str(registry_home), m.TAG_NOTE: f"Training runs and versions of {name}. {m.MIRRORED}"}
    return str(client.create_experiment(name, artifact_location=artifact_location, tags=tags))


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


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
