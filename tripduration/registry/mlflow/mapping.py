"""What the registry's records become in MLflow: params, metrics, tags, run names, alias targets (no mlflow here).

The one place both ways into MLflow use: the export of a registry (:mod:`.export`) and the tracking of a training
job as it runs (:mod:`.tracking`). A version's metadata is read through the registry's typed reader
(:class:`~tripduration.registry.metadata.ModelMetadata`), so a missing or renamed key is an error naming the
file and the key, never a param silently left out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tripduration.errors import RegistryError
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.store import ModelRegistry

#: tags the runs and model versions are found again by
TAG_VERSION = "registry_version"
TAG_SHA256 = "model_sha256"
TAG_MODEL_URI = "mlflow_model_uri"
TAG_JOB = "tripduration.job"  # a training job's registration key, on its parent run
TAG_TASK = "tripduration.task"  # the luigi task a run logs (a job's registration, a candidate)
TAG_EVALUATION = "tripduration.evaluation"  # the evaluation task logged on a parent run
TAG_IDENTICAL = "tripduration.identical_to"  # the job registered nothing: its model is this version's
TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"
ALIASES = ("production", "challenger")
#: MLflow's per-request limit for params and tags in log_batch (metrics allow 1,000), and its tag length
BATCH_LIMIT = 100
TAG_VALUE_LIMIT = 5000
MIRRORED = "Mirrored from the file registry, which stays the source of truth."


#: the schemes of a tracking URI: a sqlite file, a tracking server, a folder, a database server, Databricks
TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")


# --------------------------------------------------------------------------- where
def tracking_uri_problem(text: str) -> str | None:
    """What is wrong with an MLflow tracking URI (None: nothing): ``sqlite:///path``, ``http(s)://host[:port]``,
    ``file:///path``, a database URL (``postgresql+psycopg2://...``)."""
    hint = "give e.g. sqlite:///mlflow.db or http://127.0.0.1:5000"
    parts = urlsplit(text)
    scheme = parts.scheme.split("+")[0]
    if scheme not in TRACKING_SCHEMES:
        return f"{text!r} is not an MLflow tracking URI ({', '.join(TRACKING_SCHEMES)}): {hint}"
    if (scheme == "sqlite" and not text.startswith("sqlite:///")) or text in ("sqlite:///", "file://", "file:///"):
        return f"{text!r} names no database file or folder: {hint}"
    if scheme in ("http", "https") and not parts.hostname:
        return f"{text!r} names no server: {hint}"
    return None


def sqlite_uri_relative_to(uri: str, base: Path) -> str:
    """``sqlite:///var/mlflow/mlflow.db`` (relative, resolved by SQLAlchemy against the working directory) ->
    an absolute URI under ``base``, so the same luigi.cfg works from cron. Other URIs are returned as is."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        return prefix + str((base / uri[len(prefix) :]).resolve())
    return uri


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for a server or an in-memory database)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and tracking_uri != prefix + ":memory:":
        return Path(tracking_uri[len(prefix) :])
    return None


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts when the caller names no place.

    For a ``sqlite:///path/mlflow.db`` store MLflow's default is ``./mlruns`` in the *working directory*,
    which scatters artifacts wherever the pipeline happens to run; we put them in ``mlartifacts/`` beside the
    database instead. A tracking server decides for itself (None).
    """
    database = sqlite_file(tracking_uri)
    return (database.resolve().parent / "mlartifacts").as_uri() if database is not None else None


# --------------------------------------------------------------------------- a registry version
def run_params(meta: ModelMetadata, report: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: the algorithm, its hyper-parameters, the months and the rows of the final fit
    (``report``: the evaluation's ``metrics.json``, which records them)."""
    months = meta.months()
    params: dict[str, Any] = {
        "algorithm.candidate": meta.candidate,
        "algorithm.family": meta.algorithm.get("family"),
        "training_months": ",".join(months.get("train", [])) or None,
        "validation_month": ",".join(months.get("validation", [])) or None,
        "test_month": meta.test_month,
        "target": meta.target,
        "color": meta.color,
        # rows of training + validation the final model was given
        "training_rows": report.get("final_training_rows"),
        **_prefixed("algorithm.params.", meta.algorithm.get("params", {})),
    }
    return texts(params)


def run_metrics(meta: ModelMetadata) -> dict[str, float]:
    """MLflow metrics: every number of the metadata's metrics (``test_rmse``, ``baseline_test_rmse``,
    ``test_rmse_ratio_to_baseline``...), the production RMSE the gate compared with, feature importances."""
    metrics = flat_metrics(meta.metrics, meta.feature_importance)
    production_rmse: Any = (meta.gate or {}).get("production_rmse_on_test_month")
    if is_number(production_rmse):
        metrics["gate_production_rmse_on_test_month"] = float(production_rmse)
    return metrics


def run_tags(meta: ModelMetadata, version: str, registry_home: object) -> dict[str, str]:
    """MLflow tags: identity of the version, data lineage per month, libraries and the gate's decision."""
    gate = meta.gate or {}
    tags: dict[str, Any] = {
        TAG_VERSION: version,
        TAG_SHA256: meta.model_sha256,
        "registered_at": meta.registered_at,
        "registry_home": str(registry_home),
        "registration_key": meta.registration_key,
        "pipeline_task": meta.pipeline_task,
        "gate.promote": gate.get("promote"),
        "gate.reason": gate.get("reason"),
        "gate.compared_with_production": gate.get("compared_with_production"),
        TAG_NOTE: description(meta, version),
    }
    for record in meta.data:
        prefix = f"data.{record.role}.{record.month}"
        for key in ("file", "sha256", "bytes", "rows_in", "rows_kept", "rows_rejected"):
            tags[f"{prefix}.{key}"] = getattr(record, key)
    tags.update(_prefixed("library.", meta.libraries))
    return texts(tags)


def description(meta: ModelMetadata, version: str) -> str:
    """The run's note: the version, its algorithm, test RMSE against the baseline, the gate's reason."""
    lines = [
        f"{meta.name or ''} {version}: {meta.candidate}",
        f"test RMSE {_fmt(meta.test_metrics.get('rmse'))} vs baseline {_fmt(meta.baseline_test_metrics.get('rmse'))}",
        f"gate: {(meta.gate or {}).get('reason', 'no gate decision recorded')}",
        MIRRORED,
    ]
    return "\n\n".join(lines)


def registered_at_ms(meta: ModelMetadata) -> int | None:
    """The registration time in MLflow's epoch milliseconds (None when not recorded or unreadable)."""
    if not meta.registered_at:
        return None
    try:
        return int(dt.datetime.fromisoformat(meta.registered_at).timestamp() * 1000)
    except ValueError:
        return None


# --------------------------------------------------------------------------- a training job as it runs
@dataclass(frozen=True)
class TrainingJob:
    """One training job (a TrainingPipeline / MonthlyTraining registration): one parent run in MLflow.

    ``key`` is the registration key the registry records for the version the job registers
    (``RegisteredModel-<fingerprint>``): a rerun of the same job finds its parent run by it, and a changed
    input, setting or code makes a new job.
    """

    key: str
    model_name: str
    task_id: str
    color: str
    train_months: tuple[str, ...]
    validation_month: str
    test_month: str
    candidates: tuple[str, ...]

    def run_name(self) -> str:
        return f"{self.color} test {self.test_month} (train {','.join(self.train_months)}, val {self.validation_month})"

    def params(self) -> dict[str, str]:
        return texts(
            {
                "color": self.color,
                "training_months": ",".join(self.train_months),
                "validation_month": self.validation_month,
                "test_month": self.test_month,
                "candidates": ",".join(self.candidates),
            }
        )

    def tags(self) -> dict[str, str]:
        note = f"Training job {self.task_id}: one nested run per candidate; the registered model on this run."
        return {TAG_JOB: self.key, TAG_TASK: self.task_id, TAG_NOTE: note}


def candidate_params(score: Mapping[str, Any]) -> dict[str, str]:
    """A candidate's nested run: what was fitted on how many rows (a ``CandidateScore``'s ``score.json``)."""
    return texts(
        {
            "algorithm.candidate": score["candidate"],
            "algorithm.family": score["family"],
            "train_rows": score.get("train_rows"),
            "fit_rows": score.get("fit_rows"),
            **_prefixed("algorithm.params.", score.get("params", {})),
        }
    )


def candidate_metrics(score: Mapping[str, Any]) -> dict[str, float]:
    """A candidate's validation metrics (``validation_rmse``...) and its fit time (``fit_seconds``)."""
    metrics = flat_metrics({"validation": score["validation"]}, {})
    if is_number(score.get("fit_seconds")):
        metrics["fit_seconds"] = float(score["fit_seconds"])
    return metrics


def evaluation_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation report's numbers (its ``metrics.json``): validation and test metrics of the model and the
    baseline, feature importances; the same names a registered version's run has."""
    return flat_metrics(report.get("metrics", {}), report.get("feature_importance", {}))


# --------------------------------------------------------------------------- aliases
def challenger_of(registry: ModelRegistry, production: str | None) -> str | None:
    """The newest version that passed the quality gate and is not the production one (None if none); a version
    whose metadata cannot be read is no challenger (``models`` names it)."""
    for version in reversed(registry.versions()):
        if version == production:
            continue
        try:
            gate = registry.model_metadata(version).gate or {}
        except RegistryError:
            continue
        if gate.get("promote"):
            return version
    return None


def alias_targets(registry: ModelRegistry) -> dict[str, str | None]:
    """The registry version each alias follows: ``production.json``'s, and the challenger."""
    pointer = registry.production()
    production = str(pointer["version"]) if pointer else None
    return {"production": production, "challenger": challenger_of(registry, production)}


# --------------------------------------------------------------------------- values
def flat_metrics(metrics: Mapping[str, Any], importance: Mapping[str, Any]) -> dict[str, float]:
    """``{split: {name: number}}`` -> ``{split_name: number}``, importances as ``importance.<feature>``;
    what is not a number is left out."""
    flat: dict[str, float] = {}
    for split, values in sorted(metrics.items()):
        for key, value in sorted((values or {}).items()):
            if is_number(value):
                flat[f"{split}_{key}"] = float(value)
    for feature, value in sorted(importance.items()):
        if is_number(value):
            flat[f"importance.{feature}"] = float(value)
    return flat


def texts(values: Mapping[str, Any]) -> dict[str, str]:
    """MLflow's param and tag values: text (JSON for lists and objects), at most :data:`TAG_VALUE_LIMIT`
    characters; None is left out."""
    return {key: _text(value)[:TAG_VALUE_LIMIT] for key, value in values.items() if value is not None}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in sorted(values.items())}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if is_number(value) else "n/a"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    return str(value)
